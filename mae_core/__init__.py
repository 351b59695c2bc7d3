"""MAE itself: model, masking, loss, pretraining, the shared engine and runner, checkpoint files, images."""
