# Weighted k-NN on frozen features, DINO's eval_knn.py: the encoder's cls token after the final norm (what the
# linear probe reads; global_pool="avg": mean patch token after fc_norm), L2-normalised, cosine similarity,
# k = 20 neighbours weighted exp(sim / T) with T = 0.07, summed class votes, top-1 / top-5. No augmentation:
# both splits go through the evaluation transform (resize to img_size / crop_pct, centre crop).
protocol = "knn"
model = dict(img_size=224, global_pool="token",
             num_heads=None)  # the encoder's heads; None: the checkpoint's format or config (or --arch) says
knn = dict(k=20, temperature=0.07)
data = dict(crop_pct=None, subset=None, subset_mode="total", val_subset=None, strict=False, num_workers=8)
schedule = dict(batch_size=256)  # feature extraction only
runtime = dict(seed=0, device="auto")
