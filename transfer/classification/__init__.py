"""ImageNet classification protocols: linear probe, partial and full fine-tuning, and the k-NN probe."""
