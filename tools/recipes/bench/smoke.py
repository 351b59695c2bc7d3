# Seconds on 2 CPU cores: ViT-Tiny on 32 px, a tiny decoder, no file written.
arch = "vit_tiny_patch16"
img_size = 32
batch_size = 2
device = "cpu"
steps = 2
warmup = 1
decoder_embed_dim = 64
decoder_num_heads = 4
table2_archs = ["vit_tiny_patch16"]
decoder_depths = [1, 2]
out = None
