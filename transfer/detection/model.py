"""ViTDet's Mask R-CNN from torchvision's parts, with the encoder from any init (MAE, supervised, scratch)."""
import torch.nn as nn
from timm.layers import LayerNorm2d
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from mae_core.archs import arch_spec
from mae_core.errors import MaeBenchError
from mae_core.images import IMAGENET_MEAN, IMAGENET_STD
from transfer.encoder import init_encoder

from .backbone import SimpleFeaturePyramid, ViT, global_block_indexes

# Encoder keys a ViTDet ViT does not have: the cls token (its position slot stays in pos_embed)
# and the final norm (ViTDet's pyramid starts from the last block's output).
_DROPPED = ("cls_token", "norm.weight", "norm.bias")


def build_vit(m: dict, arch: str) -> ViT:
    """The ViTDet ViT of `arch` as the recipe's `model` section configures it."""
    spec = arch_spec(arch)
    globals_ = global_block_indexes(spec["depth"])
    return ViT(img_size=m["img_size"], pretrain_img_size=m["pretrain_img_size"], patch_size=spec["patch_size"],
               embed_dim=spec["embed_dim"], depth=spec["depth"], num_heads=spec["num_heads"],
               drop_path_rate=m["drop_path"], window_size=m["window_size"],
               window_block_indexes=[i for i in range(spec["depth"]) if i not in globals_],
               use_rel_pos=m["use_rel_pos"])


def vit_from_init(init: str, arch: str | None, m: dict) -> tuple[ViT, dict]:
    """A ViTDet ViT initialised by transfer/encoder.py's rules from `--ckpt` (`init`); pos_embed stays
    at the recipe's pretrain_img_size grid and is resized to the input in each forward, as in ViTDet."""
    enc, info = init_encoder(init, arch=arch, img_size=m["pretrain_img_size"], num_classes=0)
    vit = build_vit(m, info["arch"])
    sd = {k: v for k, v in enc.state_dict().items() if k not in _DROPPED}
    missing, unexpected = vit.load_state_dict(sd, strict=False)
    missing = [k for k in missing if ".rel_pos_" not in k]  # relative position tables start at zero
    if missing or unexpected:
        raise MaeBenchError(f"encoder {info['ckpt'] or info['arch']} does not fit the ViTDet backbone "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return vit, info


def build_detector(m: dict, vit: ViT, num_classes: int) -> MaskRCNN:
    """Mask R-CNN on the simple feature pyramid with ViTDet's heads: 2-conv RPN, 4conv1fc box head
    and 4-conv mask head with LayerNorm. Images are resized (longest side = img_size) and padded to
    a square of img_size by torchvision's transform (size_divisible = img_size)."""
    c = m["fpn_channels"]
    backbone = SimpleFeaturePyramid(vit, out_channels=c)
    levels = list(backbone.strides)
    if len(m["anchor_sizes"]) != len(levels):
        raise MaeBenchError(f"model.anchor_sizes needs one size per level ({', '.join(levels)}), got {m['anchor_sizes']}")
    anchors = AnchorGenerator(tuple((int(s),) for s in m["anchor_sizes"]), ((0.5, 1.0, 2.0),) * len(levels))
    roi_levels = levels[:-1]  # p6 only feeds the RPN
    box_head = FastRCNNConvFCHead((c, 7, 7), [m["head_channels"]] * m["box_convs"], [m["box_fc"]], norm_layer=LayerNorm2d)
    mask_head = MaskRCNNHeads(c, [m["head_channels"]] * m["mask_convs"], 1, norm_layer=LayerNorm2d)
    r = m["rpn"]
    return MaskRCNN(
        backbone, num_classes=None, min_size=m["img_size"], max_size=m["img_size"],
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), size_divisible=m["img_size"],
        rpn_anchor_generator=anchors, rpn_head=RPNHead(c, 3, conv_depth=2),
        rpn_pre_nms_top_n_train=r["pre_nms_train"], rpn_pre_nms_top_n_test=r["pre_nms_test"],
        rpn_post_nms_top_n_train=r["post_nms_train"], rpn_post_nms_top_n_test=r["post_nms_test"],
        rpn_batch_size_per_image=r["batch_per_image"],
        box_roi_pool=MultiScaleRoIAlign(roi_levels, output_size=7, sampling_ratio=0),
        box_head=box_head, box_predictor=FastRCNNPredictor(m["box_fc"], num_classes + 1),
        box_batch_size_per_image=m["roi_batch_per_image"], box_score_thresh=m["score_thresh"],
        box_detections_per_img=m["detections_per_image"],
        mask_roi_pool=MultiScaleRoIAlign(roi_levels, output_size=14, sampling_ratio=0),
        mask_head=mask_head, mask_predictor=MaskRCNNPredictor(m["head_channels"], m["head_channels"], num_classes + 1))


def build_model(m: dict, init: str, arch: str | None, num_classes: int) -> tuple[MaskRCNN, dict]:
    """(Mask R-CNN for `num_classes` foreground classes, encoder init info)."""
    vit, info = vit_from_init(init, arch, m)
    model = build_detector(m, vit, num_classes)
    info["params"] = sum(p.numel() for p in model.parameters())
    return model, info


def layer_decay_rate(name: str, decay: float, depth: int) -> float:
    """ViTDet's rule (get_vit_lr_decay_rate): patch_embed/pos_embed -> decay^(depth+1), block i ->
    decay^(depth-i), everything else (pyramid, RPN, heads) -> 1."""
    layer = depth + 1
    if name.startswith("backbone"):
        if ".pos_embed" in name or ".patch_embed" in name:
            layer = 0
        elif ".blocks." in name:
            layer = int(name[name.find(".blocks."):].split(".")[2]) + 1
    return decay ** (depth + 1 - layer)


_NORMS = (nn.LayerNorm, LayerNorm2d, nn.GroupNorm, nn.BatchNorm2d)


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float, depth: int) -> list[dict]:
    """AdamW groups as ViTDet sets them: no weight decay on norm layers and pos_embed (biases decay,
    as in detectron2's defaults), an lr_scale per parameter from `layer_decay_rate`."""
    no_decay = {id(p) for mod in model.modules() if isinstance(mod, _NORMS) for p in mod.parameters(recurse=False)}
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = 0.0 if id(p) in no_decay or name.endswith("pos_embed") else weight_decay
        scale = layer_decay_rate(name, layer_decay, depth)
        g = groups.setdefault((wd, scale), {"params": [], "weight_decay": wd, "lr_scale": scale})
        g["params"].append(p)
    return list(groups.values())
