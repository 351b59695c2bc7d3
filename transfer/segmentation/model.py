"""The segmenter: ViT backbone -> Feature2Pyramid -> UPerHead (+ auxiliary FCNHead), its loss,
whole-image and sliding-window inference, and layer-wise lr decay groups."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mae_core.param_groups import layer_decay_groups, vit_layer_id

from .backbone import ViTBackbone
from .heads import FCNHead, Feature2Pyramid, UPerHead
from .metrics import IGNORE_INDEX


class Segmenter(nn.Module):
    """`forward(img)` -> (logits, aux logits or None) at 1/4 of the input size."""

    def __init__(self, backbone: ViTBackbone, num_classes: int, channels: int = 768, aux_channels: int = 256,
                 pool_scales=(1, 2, 3, 6), dropout: float = 0.1, aux_weight: float = 0.4, aux_level: int = 2):
        super().__init__()
        dim = backbone.embed_dim
        self.backbone, self.neck = backbone, Feature2Pyramid(dim)
        self.decode_head = UPerHead([dim] * 4, channels, num_classes, pool_scales, dropout)
        self.auxiliary_head = FCNHead(dim, aux_channels, num_classes, dropout=dropout) if aux_weight > 0 else None
        self.num_classes, self.aux_weight, self.aux_level = num_classes, aux_weight, aux_level

    def forward(self, img: torch.Tensor):
        feats = self.neck(self.backbone(img))
        aux = self.auxiliary_head(feats[self.aux_level]) if self.auxiliary_head is not None and self.training else None
        return self.decode_head(feats), aux

    @torch.no_grad()
    def predict_logits(self, img: torch.Tensor, mode: str = "whole", crop: int = 512, stride: int = 341) -> torch.Tensor:
        """Logits at the input's size; `slide` averages overlapping crop x crop windows (mmseg's slide_inference)."""
        if mode == "whole":
            return self._encode_decode(img)
        if mode != "slide":
            raise ValueError(f"inference mode must be whole or slide, got {mode!r}")
        b, _, h, w = img.shape
        rows = max(h - crop + stride - 1, 0) // stride + 1
        cols = max(w - crop + stride - 1, 0) // stride + 1
        out = img.new_zeros(b, self.num_classes, h, w)
        count = img.new_zeros(1, 1, h, w)
        for r in range(rows):
            for c in range(cols):
                y2, x2 = min(r * stride + crop, h), min(c * stride + crop, w)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                out[:, :, y1:y2, x1:x2] += self._encode_decode(img[:, :, y1:y2, x1:x2])
                count[:, :, y1:y2, x1:x2] += 1
        return out / count

    def _encode_decode(self, img: torch.Tensor) -> torch.Tensor:
        # pad to a multiple of the patch size (at least 2 x 2 tokens, for the max-pooled level), then cut
        # the logits back to the input's size
        h, w = img.shape[2:]
        p = self.backbone.patch_size
        ph, pw = max(-h % p, 2 * p - h), max(-w % p, 2 * p - w)
        x = F.pad(img, (0, pw, 0, ph)) if ph > 0 or pw > 0 else img
        logits = F.interpolate(self(x)[0], size=x.shape[2:], mode="bilinear", align_corners=False)
        return logits[:, :, :h, :w]

    def param_groups(self, weight_decay: float, layer_decay: float, no_decay_names=()) -> list[dict]:
        """AdamW groups with mmseg's LearningRateDecayOptimizerConstructor rule (= MAE's): lr_scale
        decay^(depth + 1 - layer_id); no weight decay on 1-D parameters, biases and `no_decay_names`.
        mmseg 1.2.2 means to exempt pos_embed and cls_token but compares the full name (`backbone.pos_embed`)
        with the bare one, so it decays both; the paper's ADE20K numbers come from that code, so we decay them too
        (`no_decay_names=("pos_embed", "cls_token")` gives the intended rule)."""
        depth = self.backbone.depth

        def decay(name: str, p: nn.Parameter) -> float:
            skip = p.ndim == 1 or name.endswith(".bias") or name.split(".")[-1] in no_decay_names
            return 0.0 if skip else weight_decay

        return layer_decay_groups(self, layer_decay, depth, lambda name: vit_layer_id(name, depth, "backbone.vit."), decay)


def total_loss(logits: torch.Tensor, aux: torch.Tensor | None, label: torch.Tensor, aux_weight: float,
               avg_non_ignore: bool = False) -> torch.Tensor:
    """The decode head's loss plus aux_weight x the auxiliary head's (mmseg: 1.0 and 0.4)."""
    loss = seg_loss(logits, label, avg_non_ignore)
    return loss if aux is None else loss + aux_weight * seg_loss(aux, label, avg_non_ignore)


def seg_loss(logits: torch.Tensor, label: torch.Tensor, avg_non_ignore: bool = False) -> torch.Tensor:
    """Pixel cross-entropy of logits upsampled (bilinear) to the label's size; ignore index 255.
    mmseg's CrossEntropyLoss reduction: the sum over labelled pixels divided by the number of all pixels
    in the batch (its default, avg_non_ignore=False) or of the labelled ones (avg_non_ignore=True);
    a batch with no labelled pixel gives 0, not NaN."""
    logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    total = F.cross_entropy(logits.float(), label.long(), ignore_index=IGNORE_INDEX, reduction="sum")
    n = (label != IGNORE_INDEX).sum() if avg_non_ignore else label.new_tensor(label.numel())
    return total / n.clamp(min=1)
