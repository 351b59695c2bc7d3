"""The pretraining settings a result records and the tables compare (paper Table 1, Figures 5 and 7), written once.

Imports no torch: `mae_core.weights` reads them from a checkpoint's recipe, `results` (tables without torch) from a
result record's `init.pretrain`.
"""

# recipe section -> the keys of an MAE pretraining recipe that `init.pretrain` holds (mae_core.weights.pretrain_summary)
PRETRAIN_KEYS = {"model": ("mask_ratio", "mask_strategy", "mask_tokens_in_encoder", "norm_pix_loss", "decoder_depth",
                           "decoder_embed_dim", "img_size"),
                 "schedule": ("epochs", "batch_size", "accum_iter"), "data": ("augment", "subset")}

# The paper's knobs (Table 1 a-f, Figures 5 and 7): a results column -> its (section, key) in PRETRAIN_KEYS.
PRETRAIN_AXES = {
    "mask_ratio": ("model", "mask_ratio"),
    "mask_strategy": ("model", "mask_strategy"),
    "decoder_depth": ("model", "decoder_depth"),
    "decoder_embed_dim": ("model", "decoder_embed_dim"),
    "norm_pix_loss": ("model", "norm_pix_loss"),
    "mask_tokens_in_encoder": ("model", "mask_tokens_in_encoder"),
    "augment": ("data", "augment"),
    "pretrain_epochs": ("schedule", "epochs"),
}
