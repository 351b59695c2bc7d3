# ViT-H/14 fine-tuning (official FINETUNE.md): the ViT-L recipe with drop path 0.3 (batch 16 x 64 GPUs = 1024).
_base_ = ["./paper.py"]
model = dict(drop_path=0.3)
