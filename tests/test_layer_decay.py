"""The one layer-decay builder (mae_core.param_groups) gives every task the parameter groups its own builder gave:
the same (lr_scale, weight_decay) for every parameter and, for the recipes' settings, the same groups in the same
order (so the optimiser state of a checkpoint written before still loads). The references below are the task
builders as they were (classification's with the official layer rule of test_classification_protocols)."""
import pytest
import torch.nn as nn
from timm.layers import LayerNorm2d

from tests.test_classification_protocols import official_layer_id
from tests.test_detection_protocol import _detector
from transfer.classification.heads import finetune_head, set_trainable
from transfer.classification.optim import param_groups_lrd
from transfer.detection.model import _TORCH_NORMS, param_groups
from transfer.encoder import build_vit
from transfer.segmentation.backbone import ViTBackbone
from transfer.segmentation.model import Segmenter


def ref_classification(model, weight_decay, no_weight_decay_list=(), layer_decay=0.75):
    depth = len(model.blocks)
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim == 1 or name in no_weight_decay_list
        lid = official_layer_id(name, depth + 1)
        group = groups.setdefault((lid, no_decay), {"lr_scale": layer_decay ** (depth + 1 - lid),
                                                    "weight_decay": 0.0 if no_decay else weight_decay, "params": []})
        group["params"].append(p)
    return list(groups.values())


def ref_detection(model, weight_decay, layer_decay, depth, weight_decay_norm=0.0, zero_decay=("pos_embed",)):
    def layer_decay_rate(name, decay, depth):
        layer = depth + 1
        if name.startswith("backbone"):
            if ".pos_embed" in name or ".patch_embed" in name:
                layer = 0
            elif ".blocks." in name:
                layer = int(name[name.find(".blocks."):].split(".")[2]) + 1
        return decay ** (depth + 1 - layer)
    norm_params = {id(p) for mod in model.modules() if isinstance(mod, _TORCH_NORMS) and not isinstance(mod, LayerNorm2d)
                   for p in mod.parameters(recurse=False)}
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = weight_decay
        if id(p) in norm_params and weight_decay_norm is not None:
            wd = weight_decay_norm
        if name.rsplit(".", 1)[-1] in zero_decay:
            wd = 0.0
        scale = layer_decay_rate(name, layer_decay, depth)
        g = groups.setdefault((wd, scale), {"params": [], "weight_decay": wd, "lr_scale": scale})
        g["params"].append(p)
    return list(groups.values())


def ref_segmentation(model, weight_decay, layer_decay, no_decay_names=()):  # mmseg 1.2.2 decays pos_embed, cls_token
    depth = model.backbone.depth

    def backbone_layer_id(name):
        if name.startswith(("vit.cls_token", "vit.pos_embed", "vit.patch_embed")):
            return 0
        if name.startswith("vit.blocks."):
            return int(name.split(".")[2]) + 1
        return depth + 1
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = backbone_layer_id(name[len("backbone."):]) if name.startswith("backbone.") else depth + 1
        skip = p.ndim == 1 or name.endswith(".bias") or name.split(".")[-1] in no_decay_names
        key = (lid, skip)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if skip else weight_decay,
                           "lr_scale": layer_decay ** (depth + 1 - lid)}
        groups[key]["params"].append(p)
    return list(groups.values())


def per_param(groups):
    return {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}


def structure(groups):
    return [([id(p) for p in g["params"]], g["lr_scale"], g["weight_decay"]) for g in groups]


def check(got, want, model, same_groups):
    names = {id(p): n for n, p in model.named_parameters()}
    a, b = per_param(got), per_param(want)
    assert a.keys() == b.keys() and len(a) == sum(len(g["params"]) for g in got)
    for k in b:
        assert a[k] == b[k], names[k]  # bitwise: the same float expression
    if same_groups:
        assert structure(got) == structure(want)


def _classifier(pool="token", blocks=None):
    model = build_vit("vit_tiny_patch16", img_size=32, num_classes=5, global_pool=pool)
    finetune_head(model)
    if blocks is not None:
        set_trainable(model, "partial", blocks)
    return model


# (weight decay, layer decay) of the recipes (in1k_finetune base/paper/smoke, supervised), then off-recipe settings
@pytest.mark.parametrize("wd, decay, recipe", [(0.05, 0.65, True), (0.05, 0.75, True), (0.3, 1.0, True),
                                               (0.0, 0.75, False), (0.05, 1.0, True)])
@pytest.mark.parametrize("pool, blocks", [("token", None), ("avg", None), ("avg", 4)])
def test_classification_groups_unchanged(wd, decay, recipe, pool, blocks):
    model = _classifier(pool, blocks)
    kw = dict(no_weight_decay_list=model.no_weight_decay(), layer_decay=decay)
    # weight decay 0: a layer's decayed and undecayed parameters now share one group (the same numbers)
    check(param_groups_lrd(model, wd, **kw), ref_classification(model, wd, **kw), model, same_groups=wd != 0)


# coco_det base (ViT-B), paper_large, paper_huge (weight_decay_norm None, no zero_decay), then layer decay 1
@pytest.mark.parametrize("decay, wd_norm, zero, recipe", [(0.7, 0.0, ("pos_embed",), True), (0.8, 0.0, ("pos_embed",), True),
                                                          (0.9, None, (), True), (1.0, 0.0, ("pos_embed",), False)])
def test_detection_groups_unchanged(decay, wd_norm, zero, recipe):
    model = _detector()
    depth = len(model.backbone.net.blocks)
    got = param_groups(model, 0.1, decay, depth, wd_norm, zero)
    # layer decay 1: detectron2 merged all layers of equal settings into one group; now one group per layer
    check(got, ref_detection(model, 0.1, decay, depth, wd_norm, zero), model, same_groups=recipe)


@pytest.mark.parametrize("wd, decay, recipe", [(0.05, 0.65, True), (0.05, 0.75, True), (0.05, 1.0, True),
                                               (0.0, 0.65, False)])
@pytest.mark.parametrize("rel", [True, False])
def test_segmentation_groups_unchanged(wd, decay, recipe, rel):
    vit = build_vit("vit_tiny_patch16", 64, 0)
    vit.norm = nn.Identity()
    model = Segmenter(ViTBackbone(vit, rel_pos_bias=rel, layer_scale_init=1.0), 5, channels=16, aux_channels=8)
    check(model.param_groups(wd, decay), ref_segmentation(model, wd, decay), model, same_groups=recipe)
