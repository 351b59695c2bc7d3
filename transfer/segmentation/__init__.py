"""ADE20K semantic segmentation: a ViT with a feature pyramid, UperNet + FCN heads, mIoU (mmsegmentation's design)."""
