"""MAE itself: model, masking, losses, checkpoint I/O, reconstruction pictures."""
