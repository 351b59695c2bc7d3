"""ViTDet's Mask R-CNN from torchvision's parts, with the encoder from any init (MAE, supervised, scratch).

Where torchvision's defaults differ from detectron2's ViTDet, the detectron2 semantics are written here:
RoIAlign with aligned=True at scales fixed from the backbone strides (ROIPooler, ROIAlignV2), L1 box
regression (smooth_l1_beta 0) with detectron2's normalisers, and hard mask targets rasterised per RoI.
"""
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d, resample_patch_embed
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_area, roi_align

from mae_core.archs import VitArch, arch_spec
from mae_core.checkpoint import check_fit
from mae_core.errors import MaeBenchError
from mae_core.images import IMAGENET_MEAN, IMAGENET_STD
from mae_core.param_groups import layer_decay_groups
from mae_core.pos_embed import REL_POS_EXTRA, resize_pos_embed, resize_rel_pos_table, rel_pos_grid
from transfer.encoder import init_encoder

from .backbone import SimpleFeaturePyramid, ViT, global_block_indexes

# Encoder keys a ViTDet ViT does not have: the cls token (its position slot stays in pos_embed, as
# pretrain_use_cls_token=True expects) and the final norm (ViTDet's pyramid starts from the last block's output).
DROPPED = ("cls_token", "norm.weight", "norm.bias")
# Why each encoder key ViTDet's backbone leaves out is left out (the run's init.unused; README, Protocols)
_NO_TOKENS = "ViTDet's windowed backbone carries patch tokens only (it drops the class token's role)"
_WHY = {"cls_token": f"class token: {_NO_TOKENS}", "reg_token": f"register tokens: {_NO_TOKENS}",
        "dist_token": f"distillation token: {_NO_TOKENS}",
        "norm.weight": "final norm: ViTDet's pyramid starts from the last block's output",
        "norm.bias": "final norm: ViTDet's pyramid starts from the last block's output"}
VITDET_PATCH = 16  # ViTDet runs every ViT at patch 16, so the pyramid strides are 4..32


def vitdet_pretrain_size(patch_size: int, pretrain_img_size: int) -> int:
    """The pretraining size ViTDet's patch-16 ViT sees: the same for 16 and 14 (ViT-H/14's grid shrinks to 16 x 16
    px patches of the same image, as detectron2's config); a smaller patch (the ViT-Micro/Tiny/8 of the small-scale
    benchmark) keeps its token grid, as if the image had been upsampled by 16 / patch."""
    return pretrain_img_size if patch_size in (14, VITDET_PATCH) else pretrain_img_size * VITDET_PATCH // patch_size


def to_patch16(sd: dict, pretrain_img_size: int, prefix: int = 1) -> dict:
    """ViTDet's ViT-H/14 handling (detectron2's mae_pretrain_vit_huge_p14to16 init): a patch-14 encoder's
    patch-embedding kernel resized to 16 x 16 and its pos_embed (`prefix` token slots first) to the patch-16 grid
    of the pretraining size, both bicubic (align_corners=False), as EVA's interpolate_patch_14to16 does.
    Other patch sizes (the small-scale ViT-Micro/Tiny/8, no reference) use FlexiViT's pseudo-inverse resize
    (timm's resample_patch_embed): the 16 x 16 kernel on an image upsampled 2x gives the tokens the 8 x 8 kernel
    gave on the original, where a bicubic resize would multiply them by about 4."""
    w = sd["patch_embed.proj.weight"]
    if w.shape[-1] == VITDET_PATCH:
        return sd
    g = vitdet_pretrain_size(w.shape[-1], pretrain_img_size) // VITDET_PATCH
    if w.shape[-1] == 14:
        kernel = F.interpolate(w.float(), size=(VITDET_PATCH,) * 2, mode="bicubic", align_corners=False)
    else:
        kernel = resample_patch_embed(w.float(), [VITDET_PATCH] * 2)
    out = {**sd, "patch_embed.proj.weight": kernel.to(w.dtype)}
    if "pos_embed" in sd:
        out["pos_embed"] = resize_pos_embed(sd["pos_embed"], (g, g), prefix)
    return out


def vitdet_variants(spec: VitArch) -> dict:
    """The ViTDet Block options (backbone.Block) that carry `spec`'s block variants."""
    return dict(qkv_bias=spec.qkv_bias, qv_bias=spec.beit and spec.qkv_bias, rel_pos_table=spec.rel_pos_bias,
                layer_scale=spec.layer_scale, swiglu=spec.swiglu, norm_eps=spec.norm_eps)


def build_vitdet_vit(model_cfg: dict, arch: str | VitArch) -> ViT:
    """The ViTDet ViT of `arch` (a name, or the VitArch of a checkpoint with its variants) as the recipe's `model`
    section configures it (patch 16 for every arch). A plain ViT's class slot stays in pos_embed (detectron2's
    pretrain_use_cls_token); an encoder with other prefix slots, or none, keeps the patches' only."""
    spec = arch if isinstance(arch, VitArch) else VitArch(**arch_spec(arch))
    if model_cfg["pretrain_img_size"] % VITDET_PATCH:
        raise MaeBenchError(f"model.pretrain_img_size {model_cfg['pretrain_img_size']} is not a multiple of ViTDet's "
                            f"patch size {VITDET_PATCH}")
    globals_ = global_block_indexes(spec.depth)
    return ViT(img_size=model_cfg["img_size"], pretrain_img_size=model_cfg["pretrain_img_size"],
               patch_size=VITDET_PATCH, embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads,
               mlp_ratio=spec.mlp_ratio, drop_path_rate=model_cfg["drop_path"], window_size=model_cfg["window_size"],
               window_block_indexes=[i for i in range(spec.depth) if i not in globals_],
               use_rel_pos=model_cfg["use_rel_pos"], use_abs_pos=spec.abs_pos,
               pretrain_use_cls_token=_pos_slots(spec) == 1,
               variants=None if spec.plain else vitdet_variants(spec))


def _pos_slots(spec: VitArch) -> int:
    """How many token slots precede the patches in the encoder's pos_embed."""
    return 0 if spec.no_embed_class or not spec.abs_pos else spec.prefix_tokens


def refuse_for_vitdet(spec: VitArch, info: dict) -> None:
    """One error line, before any work, for an encoder ViTDet's backbone cannot take as it was pretrained."""
    src = f"{info.get('ckpt') or spec.name} ({info.get('format', 'scratch')})"
    if spec.in_chans != 3:
        raise MaeBenchError(f"ViTDet (coco_det) takes RGB images; {src} has {spec.in_chans} input channels")
    if spec.rel_pos_bias and spec.patch_size == 14:  # the one patch whose token grid changes (vitdet_pretrain_size)
        raise MaeBenchError(f"ViTDet (coco_det): {src} has patch 14 and BEiT relative position tables, whose offsets "
                            f"count patch-14 tokens; no reference resamples them to ViTDet's patch 16")


def vitdet_weights(enc_sd: dict, spec: VitArch, vit: ViT, pretrain_img_size: int) -> tuple[dict, dict]:
    """(the encoder's tensors under the ViTDet backbone's names and shapes, {key it leaves out: why}).
    Extra tokens and the final norm are left out (ViTDet's windowed backbone has patch tokens only), as are the
    token slots of pos_embed unless it is the plain ViT's one class slot; layer scale (BEiT's gamma_1 / gamma_2
    renamed to timm's ls1 / ls2.gamma) and q / v biases are kept; each block's BEiT table is resized to that
    block's attention grid (the window, or the whole image grid for a global block) by BEiT's own cubic resize, its
    3 class-token rows left out."""
    left_out = [k for k in ("cls_token", "reg_token", "norm.weight", "norm.bias") if k in enc_sd]
    named = {"reg_token": "dist_token"} if spec.dist_token else {}  # DeiT's token rides in timm's register slot
    dropped = {named.get(k, k): _WHY[named.get(k, k)] for k in left_out}
    fresh = ("fc_norm.weight", "fc_norm.bias")  # an avg-pool encoder's new fc_norm (not from the checkpoint)
    sd = {k: v for k, v in enc_sd.items() if k not in left_out and k not in fresh
          and not k.endswith("relative_position_index")}
    slots = _pos_slots(spec)
    if "pos_embed" in sd and slots and not vit.pretrain_use_cls_token:
        sd["pos_embed"] = sd["pos_embed"][:, slots:]
        dropped[f"pos_embed[:, :{slots}]"] = f"position slots of the {slots} prefix tokens: {_NO_TOKENS}"
    elif "pos_embed" in sd and slots:
        dropped["pos_embed[:, :1]"] = ("class token's position slot, kept unused in pos_embed as detectron2's "
                                       "pretrain_use_cls_token")
    sd = {re.sub(r"^(blocks\.\d+)\.gamma_([12])$", r"\1.ls\2.gamma", k): v for k, v in sd.items()}
    for i, blk in enumerate(vit.blocks):
        key = f"blocks.{i}.attn.relative_position_bias_table"
        if key not in sd:
            continue
        grid = blk.attn.table_grid
        try:
            table = resize_rel_pos_table(sd[key], grid)
        except ValueError as e:
            raise MaeBenchError(f"ViTDet (coco_det): block {i}'s relative position table ({rel_pos_grid(sd[key])} x "
                                f"{rel_pos_grid(sd[key])} grid) cannot be resized to its {grid[0]} x {grid[1]} "
                                f"attention grid: {e}") from None
        sd[key] = table[:-REL_POS_EXTRA]
        dropped[f"{key}[-{REL_POS_EXTRA}:]"] = f"class-token rows of BEiT's relative position table: {_NO_TOKENS}"
    return to_patch16(sd, pretrain_img_size, int(vit.pretrain_use_cls_token)), dropped


def vit_from_init(init: str, arch: str | None, model_cfg: dict) -> tuple[ViT, dict]:
    """A ViTDet ViT initialised by transfer/encoder.py's rules from `--ckpt` (`init`); pos_embed stays
    at the recipe's pretrain_img_size grid and is resized to the input in each forward, as in ViTDet. Any encoder
    the formats registry reads enters with its variants (vitdet_weights; README, Protocols); what it leaves out is
    added to info["dropped"] (the record's init.unused)."""
    # ViTDet reads no pooled feature (global_pool None: avg for an encoder without class token)
    enc, info = init_encoder(init, arch=arch, img_size=model_cfg["pretrain_img_size"], num_classes=0,
                             global_pool=None, num_heads=model_cfg.get("num_heads"))
    spec = VitArch(**{k: v for k, v in info["arch_spec"].items() if k != "name"}) if "arch_spec" in info \
        else VitArch(**arch_spec(info["arch"]))
    refuse_for_vitdet(spec, info)
    size = vitdet_pretrain_size(enc.patch_embed.patch_size[0], model_cfg["pretrain_img_size"])
    vit = build_vitdet_vit({**model_cfg, "pretrain_img_size": size}, spec)
    sd, dropped = vitdet_weights(enc.state_dict(), spec, vit, model_cfg["pretrain_img_size"])
    expected = vit.state_dict()
    check_fit(expected, sd, info["ckpt"] or info["arch"], "the ViTDet backbone",
              may_be_missing=[k for k in expected if ".rel_pos_" in k])  # relative position tables start at zero
    vit.load_state_dict(sd, strict=False)
    if "dropped" in info:  # a checkpoint: its record names every key the backbone does not use
        info["dropped"] = {**info["dropped"], **dropped}
        info["dropped"].update({k: _WHY[k] for k in ("norm.weight", "norm.bias") if k in info["dropped"]})
    return vit, info


class Anchors(AnchorGenerator):
    """detectron2's DefaultAnchorGenerator (offset 0): cell anchors not rounded to whole pixels, and
    anchors in float32 whatever the features' dtype (torchvision's follow it: bf16 anchors at 1024 px
    are off by up to 4 px)."""

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=torch.device("cpu")):
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))  # aspect ratio = h / w
        ws = (scales[None, :] / h_ratios[:, None]).reshape(-1)
        hs = (scales[None, :] * h_ratios[:, None]).reshape(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, image_list, feature_maps):
        shapes = [torch.empty(0, *f.shape[-2:], device=f.device) for f in feature_maps]  # float32 stand-ins
        return super().forward(image_list, shapes)


class FloatRPNHead(RPNHead):
    """RPNHead whose outputs are float32, so proposals are decoded in float32 under autocast (detectron2's
    Box2BoxTransform.apply_deltas: "ensure fp32 for decoding precision")."""

    def forward(self, x):
        logits, deltas = super().forward(x)
        return [t.float() for t in logits], [t.float() for t in deltas]


class FloatBoxPredictor(FastRCNNPredictor):
    """FastRCNNPredictor with float32 outputs, for the same reason."""

    def forward(self, x):
        scores, deltas = super().forward(x)
        return scores.float(), deltas.float()


class RoIPooler(nn.Module):
    """detectron2's ROIPooler with ROIAlignV2: each box is pooled by RoIAlign (aligned=True) from the level
    k = floor(4 + log2(sqrt(area) / 224 + 1e-8)), clamped to the pyramid, at the scale 1 / stride fixed
    from the backbone (torchvision's MultiScaleRoIAlign guesses its scales from the first batch)."""

    def __init__(self, strides: dict, output_size: int, sampling_ratio: int = 0, canonical_size: int = 224,
                 canonical_level: int = 4):
        super().__init__()
        self.names, self.strides = list(strides), list(strides.values())
        levels = [math.log2(s) for s in self.strides]
        if any(k != int(k) for k in levels) or levels != list(range(int(levels[0]), int(levels[0]) + len(levels))):
            raise ValueError(f"pooled levels need strides 2^k, 2^(k+1), ...; got {self.strides}")
        self.min_level, self.max_level = int(levels[0]), int(levels[-1])
        self.output_size, self.sampling_ratio = (output_size, output_size), sampling_ratio
        self.canonical_size, self.canonical_level = canonical_size, canonical_level

    def level_of(self, boxes: torch.Tensor) -> torch.Tensor:
        """Index into the pooled levels (0 = finest) of each xyxy box."""
        k = torch.floor(self.canonical_level + torch.log2(torch.sqrt(box_area(boxes)) / self.canonical_size + 1e-8))
        return (k.clamp(self.min_level, self.max_level) - self.min_level).long()

    def forward(self, x: dict, boxes: list[torch.Tensor], image_shapes=None) -> torch.Tensor:
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        levels = self.level_of(rois[:, 1:])
        first = x[self.names[0]]
        out = first.new_zeros((len(rois), first.shape[1], *self.output_size))
        for k, (name, stride) in enumerate(zip(self.names, self.strides)):
            idx = torch.where(levels == k)[0]
            pooled = roi_align(x[name], rois[idx], self.output_size, spatial_scale=1.0 / stride,
                               sampling_ratio=self.sampling_ratio, aligned=True)
            out[idx] = pooled.to(out.dtype)
        return out


class RPN(RegionProposalNetwork):
    """torchvision's RPN with detectron2's losses: objectness BCE and L1 box regression (smooth_l1_beta 0),
    each summed over the sampled anchors and divided by batch_size_per_image x images."""

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        pos, neg = self.fg_bg_sampler(labels)
        pos, neg = torch.where(torch.cat(pos))[0], torch.where(torch.cat(neg))[0]
        sampled = torch.cat([pos, neg])
        normalizer = self.fg_bg_sampler.batch_size_per_image * len(labels)
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        box_loss = F.l1_loss(pred_bbox_deltas[pos], regression_targets[pos], reduction="sum") / normalizer
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels[sampled],
                                                             reduction="sum") / normalizer
        return objectness_loss, box_loss


def fast_rcnn_loss(class_logits, box_regression, labels, regression_targets):
    """detectron2's FastRCNNOutputLayers.losses: cross-entropy averaged over the sampled RoIs and L1 on the
    ground-truth class's deltas of the foreground RoIs, summed and divided by the number of sampled RoIs."""
    labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
    loss_cls = F.cross_entropy(class_logits, labels)
    fg = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(len(labels), -1, 4)[fg, labels[fg]]
    loss_box = F.l1_loss(deltas, regression_targets[fg], reduction="sum") / max(labels.numel(), 1)
    return loss_cls, loss_box


def mask_rcnn_loss(mask_logits, labels, targets: torch.Tensor):
    """detectron2's mask_rcnn_loss: BCE of the ground-truth class's mask logits against hard targets,
    averaged over all pixels of all positive RoIs (0 without any)."""
    if len(labels) == 0:
        return mask_logits.sum() * 0
    logits = mask_logits[torch.arange(len(labels), device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.device, torch.float32))


class ViTDetRoIHeads(RoIHeads):
    """torchvision's RoIHeads (inference as is) trained with detectron2's losses; the mask targets of each
    positive RoI come from its instance's polygons or bitmap (target["masks"], an InstanceMasks)."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_cls, loss_box = fast_rcnn_loss(class_logits, box_regression, labels, regression_targets)
        pos = [torch.where(lab > 0)[0] for lab in labels]
        boxes = [p[i] for p, i in zip(proposals, pos)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_shapes)))
        size = mask_logits.shape[-1]
        gt = torch.cat([t["masks"].crop_and_resize(m[i], b, size)
                        for t, m, i, b in zip(targets, matched_idxs, pos, boxes)])
        loss_mask = mask_rcnn_loss(mask_logits, torch.cat([lab[i] for lab, i in zip(labels, pos)]), gt)
        return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_box, "loss_mask": loss_mask}


def init_heads_like_detectron2(roi_heads: RoIHeads) -> None:
    """detectron2's head initialisation where torchvision's differs (its box-head convs, mask-head convs
    and RPN already match): box-head fc layers c2_xavier_fill (kaiming-uniform a=1, bias 0), class scores
    normal(0.01), box deltas normal(0.001), mask predictor normal(0.001), biases 0 (the mask deconvolution's too)."""
    for layer in roi_heads.box_head.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=1)
            nn.init.zeros_(layer.bias)
    nn.init.zeros_(roi_heads.mask_predictor.conv5_mask.bias)
    for layer, std in ((roi_heads.box_predictor.cls_score, 0.01), (roi_heads.box_predictor.bbox_pred, 0.001),
                       (roi_heads.mask_predictor.mask_fcn_logits, 0.001)):
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


def build_detector(model_cfg: dict, vit: ViT, num_classes: int) -> GeneralizedRCNN:
    """Mask R-CNN on the simple feature pyramid with ViTDet's heads: 2-conv RPN, 4conv1fc box head
    and 4-conv mask head with LayerNorm. Evaluation images are resized (longest side = img_size) and
    padded to a square of img_size; training images arrive as LSJ's img_size squares."""
    c = model_cfg["fpn_channels"]
    backbone = SimpleFeaturePyramid(vit, out_channels=c)
    levels = list(backbone.strides)
    if len(model_cfg["anchor_sizes"]) != len(levels):
        raise MaeBenchError(f"model.anchor_sizes needs one size per level ({', '.join(levels)}), "
                            f"got {model_cfg['anchor_sizes']}")
    anchors = Anchors(tuple((float(s),) for s in model_cfg["anchor_sizes"]), ((0.5, 1.0, 2.0),) * len(levels))
    pooled = {k: backbone.strides[k] for k in levels[:-1]}  # p6 only feeds the RPN
    rpn_cfg = model_cfg["rpn"]
    rpn = RPN(anchors, FloatRPNHead(c, 3, conv_depth=2), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
              batch_size_per_image=rpn_cfg["batch_per_image"], positive_fraction=0.5,
              pre_nms_top_n=dict(training=rpn_cfg["pre_nms_train"], testing=rpn_cfg["pre_nms_test"]),
              post_nms_top_n=dict(training=rpn_cfg["post_nms_train"], testing=rpn_cfg["post_nms_test"]), nms_thresh=0.7)
    roi_heads = ViTDetRoIHeads(
        RoIPooler(pooled, 7),
        FastRCNNConvFCHead((c, 7, 7), [model_cfg["head_channels"]] * model_cfg["box_convs"], [model_cfg["box_fc"]],
                           norm_layer=LayerNorm2d),
        FloatBoxPredictor(model_cfg["box_fc"], num_classes + 1),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=model_cfg["roi_batch_per_image"],
        positive_fraction=0.25,
        bbox_reg_weights=None, score_thresh=model_cfg["score_thresh"], nms_thresh=0.5,
        detections_per_img=model_cfg["detections_per_image"],
        mask_roi_pool=RoIPooler(pooled, 14),
        mask_head=MaskRCNNHeads(c, [model_cfg["head_channels"]] * model_cfg["mask_convs"], 1,
                                norm_layer=LayerNorm2d),
        mask_predictor=MaskRCNNPredictor(model_cfg["head_channels"], model_cfg["head_channels"], num_classes + 1))
    head_init = model_cfg.get("head_init", "torchvision")  # weights saved before this setting existed: any init will do
    if head_init not in ("detectron2", "torchvision"):
        raise MaeBenchError(f"model.head_init must be detectron2 or torchvision, got {head_init!r}")
    if head_init == "detectron2":
        init_heads_like_detectron2(roi_heads)
    size = model_cfg["img_size"]
    transform = GeneralizedRCNNTransform(size, size, list(IMAGENET_MEAN), list(IMAGENET_STD), size_divisible=size,
                                         _skip_resize=True)
    return GeneralizedRCNN(backbone, rpn, roi_heads, transform)


def detector_from_init(model_cfg: dict, init: str, arch: str | None,
                       num_classes: int) -> tuple[GeneralizedRCNN, dict]:
    """(Mask R-CNN for `num_classes` foreground classes, encoder init info)."""
    vit, info = vit_from_init(init, arch, model_cfg)
    model = build_detector(model_cfg, vit, num_classes)
    info["params"] = sum(p.numel() for p in model.parameters())
    return model, info


def vitdet_layer_id(name: str, depth: int) -> int:
    """ViTDet's layer of a parameter (get_vit_lr_decay_rate, matched on substrings of the detector's names as
    there): patch_embed/pos_embed -> 0, block i -> i + 1, everything else (pyramid, RPN, heads) -> depth + 1."""
    layer = depth + 1
    if name.startswith("backbone"):
        if ".pos_embed" in name or ".patch_embed" in name:
            layer = 0
        elif ".blocks." in name:
            layer = int(name[name.find(".blocks."):].split(".")[2]) + 1
    return layer


# detectron2's get_default_optimizer_params: the torch norm types that weight_decay_norm applies to.
# timm's LayerNorm2d subclasses nn.LayerNorm but stands for detectron2's own channels-first LayerNorm
# (pyramid and heads, norm="LN"), which is no torch norm there and keeps the default weight decay.
_TORCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
                nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float, depth: int,
                 weight_decay_norm: float | None = 0.0, zero_decay=("pos_embed",)) -> list[dict]:
    """AdamW groups as detectron2's get_default_optimizer_params builds them for ViTDet: `weight_decay_norm`
    on the parameters of torch norm layers (None: the default decay), weight decay 0 on parameters named
    in `zero_decay` (the config's overrides, matched on the parameter's own name), `weight_decay` on the
    rest (biases included); lr_scale decay^(depth + 1 - layer), the layer from `vitdet_layer_id` (ViTDet's
    get_vit_lr_decay_rate)."""
    norm_params = {id(p) for mod in model.modules() if isinstance(mod, _TORCH_NORMS) and not isinstance(mod, LayerNorm2d)
                   for p in mod.parameters(recurse=False)}

    def decay(name: str, p: nn.Parameter) -> float:
        wd = weight_decay
        if id(p) in norm_params and weight_decay_norm is not None:
            wd = weight_decay_norm
        if name.rsplit(".", 1)[-1] in zero_decay:
            wd = 0.0
        return wd

    return layer_decay_groups(model, layer_decay, depth, lambda name: vitdet_layer_id(name, depth), decay)
