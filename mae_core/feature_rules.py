"""Feature rules: which tokens of which blocks a method's own linear evaluation and k-NN read from a frozen ViT.

The MAE paper's protocols read the same features from every encoder (`model.features="paper"`, the default: the
class token after the final norm, or with `model.global_pool=avg` the mean patch token after fc_norm). Each
checkpoint format (mae_core.formats) also records its method's own rule, which `model.features="method"` selects
for `in1k_linear` and `knn`:

- `cls`: the class token after the final norm (MAE main_linprobe.py, MoCo v3 main_lincls.py, DeiT, timm; the
  k-NN of DINO, iBOT and DINOv2);
- `cls_last4`: class tokens of the last 4 blocks, each after the final norm, concatenated (DINO / iBOT
  eval_linear.py, ViT-S);
- `dino_cls_avg`: the class token and the mean patch token of the last block, after the norm, interleaved (DINO
  eval_linear.py, ViT-B); `cls_avg`: the same two concatenated (iBOT eval_linear.py, ViT-B/L);
- `cls_last4_avg`: class tokens of the last 4 blocks and the last block's mean patch token, after the norm (DINOv2
  linear.py, the hub's default linear head);
- `beit_last_cls_avg`: the class token and the mean patch token of the last block, without the final norm (BEiT
  run_linear_eval.py).

Each rule is one function of timm's `forward_intermediates` (VisionTransformer and Beit alike); `use_rule` makes a
built encoder read it (its `forward_features` gives the rule's vector, the head's input width follows it).
"""
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.layers import trunc_normal_

from .archs import VitArch
from .errors import MaeBenchError

CHOICES = ("paper", "method")  # model.features
PROBES = ("linear", "knn")


@dataclass(frozen=True)
class FeatureRule:
    name: str
    blocks: int  # class tokens of the last `blocks` blocks (all blocks when the encoder has fewer, as DINO's code)
    avgpool: bool  # + the mean of the last block's patch tokens (registers and other prefix tokens left out)
    norm: bool  # each block's output through the encoder's final norm first
    interleave: bool  # DINO: cat((cls.unsqueeze(-1), mean.unsqueeze(-1)), -1).reshape(B, -1)
    source: str  # the reference: repository, file, function
    exact_blocks: bool = False  # DINOv2's code asserts the encoder has that many blocks

    def width(self, embed_dim: int, depth: int) -> int:
        return embed_dim * (min(self.blocks, depth) + int(self.avgpool))

    def check(self, arch: VitArch) -> None:
        if not arch.class_token:
            raise MaeBenchError(f"feature rule {self.name} reads the class token; {arch.name} has none "
                                f"(use model.features=paper with model.global_pool=avg)")
        if self.exact_blocks and arch.depth < self.blocks:
            raise MaeBenchError(f"feature rule {self.name} reads the last {self.blocks} blocks ({self.source}); "
                                f"{arch.name} has {arch.depth}")

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The rule's feature vector [B, width] of images `x` through a timm VisionTransformer / Beit `model`."""
        n = min(self.blocks, len(model.blocks))
        outs = model.forward_intermediates(x, indices=n, return_prefix_tokens=True, norm=self.norm,
                                           output_fmt="NLC", intermediates_only=True)  # [(patches, prefix), ...]
        feats = torch.cat([prefix[:, 0] for _, prefix in outs], dim=-1)
        if self.avgpool:
            mean = outs[-1][0].mean(dim=1)
            feats = torch.stack((feats, mean), dim=-1).flatten(1) if self.interleave else torch.cat((feats, mean), -1)
        return feats


RULES = {r.name: r for r in (
    FeatureRule("cls", 1, False, True, False,
                "facebookresearch/mae main_linprobe.py (global_pool=False), facebookresearch/moco-v3 "
                "main_lincls.py, facebookresearch/dino eval_knn.py extract_features, facebookresearch/dinov2 "
                "dinov2/eval/knn.py (ModelWithNormalize: x_norm_clstoken)"),
    FeatureRule("cls_last4", 4, False, True, False,
                "facebookresearch/dino eval_linear.py train() (n_last_blocks=4, avgpool_patchtokens=False: ViT-S); "
                "bytedance/ibot evaluation/eval_linear.py train() (n_last_blocks=4, avgpool_patchtokens=0)"),
    FeatureRule("dino_cls_avg", 1, True, True, True,
                "facebookresearch/dino eval_linear.py train() (n_last_blocks=1, avgpool_patchtokens=True: ViT-B)"),
    FeatureRule("cls_avg", 1, True, True, False,
                "bytedance/ibot evaluation/eval_linear.py train() (n_last_blocks=1, avgpool_patchtokens=2: ViT-B/L)"),
    FeatureRule("cls_last4_avg", 4, True, True, False,
                "facebookresearch/dinov2 dinov2/eval/linear.py create_linear_input(use_n_blocks=4, "
                "use_avgpool=True), the hub's default linear head (dinov2/hub/classifiers.py, layers=4)",
                exact_blocks=True),
    FeatureRule("beit_last_cls_avg", 1, True, False, False,
                "microsoft/unilm beit/run_linear_eval.py train() (get_intermediate_layers: block outputs without "
                "the final norm; cat(x[:, 0], mean(x[:, 1:])); the last block's classifier)"),
)}


@dataclass(frozen=True)
class MethodFeatures:
    """What one method's own evaluation code reads, per probe: a rule name, or a function of the architecture
    giving one (DINO and iBOT pick theirs by model size)."""
    method: str
    linear: str | Callable[[VitArch], str]
    knn: str | Callable[[VitArch], str]

    def rule(self, probe: str, arch: VitArch) -> FeatureRule:
        pick = getattr(self, probe)
        return RULES[pick(arch) if callable(pick) else pick]


def _dino_linear(arch: VitArch) -> str:
    """eval_linear.py's help: n=4 without pooling for ViT-S (its defaults), n=1 with pooling for ViT-B."""
    return "cls_last4" if arch.embed_dim <= 384 else "dino_cls_avg"


def _ibot_linear(arch: VitArch) -> str:
    """ibot run.sh: an arch named *small* takes n=4, avgpool 0; every other ViT n=1, avgpool 2."""
    return "cls_last4" if arch.embed_dim == 384 else "cls_avg"


METHODS = {m.method: m for m in (
    MethodFeatures("MAE", "cls", "cls"),
    MethodFeatures("MoCo v3", "cls", "cls"),
    MethodFeatures("DeiT", "cls", "cls"),  # deit models.py: the head on the class token after the norm
    MethodFeatures("supervised", "cls", "cls"),  # our supervised baseline: DeiT's reading
    MethodFeatures("timm", "cls", "cls"),
    MethodFeatures("DINO", _dino_linear, "cls"),
    MethodFeatures("iBOT", _ibot_linear, "cls"),  # evaluation/eval_knn.py: n_last_blocks=1, avgpool_patchtokens=0
    MethodFeatures("DINOv2", "cls_last4_avg", "cls"),
    MethodFeatures("BEiT", "beit_last_cls_avg", "beit_last_cls_avg"),  # BEiT has no k-NN code: its probe's features
)}


class RuleReader:
    """Mixin over a timm VisionTransformer / Beit: forward_features gives the feature rule's vector, forward_head
    puts the head on it (parameter names, and so every protocol's freezing, are the encoder's own)."""
    feature_rule: FeatureRule

    def forward_features(self, x):
        return self.feature_rule(self, x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


_READERS: dict[type, type] = {}


def use_rule(model: nn.Module, rule: FeatureRule) -> nn.Module:
    """Make `model` read `rule`'s features; a classification head is rebuilt for the rule's width (the official
    fine-tuning init, as mae_core.vit)."""
    cls = type(model)
    if cls not in _READERS:
        _READERS[cls] = type(f"{cls.__name__}Reading", (RuleReader, cls), {})
    model.__class__ = _READERS[cls]
    model.feature_rule = rule
    width = rule.width(model.embed_dim, len(model.blocks))
    model.num_features = model.head_hidden_size = width
    if isinstance(model.head, nn.Linear):
        model.head = nn.Linear(width, model.head.out_features).to(model.head.weight.device)
        trunc_normal_(model.head.weight, std=2e-5)
        nn.init.zeros_(model.head.bias)
    return model


def check_option(option) -> None:
    if option not in CHOICES:
        raise MaeBenchError(f"model.features must be one of {', '.join(CHOICES)}, got {option!r}")


def resolve(option: str, probe: str, method: MethodFeatures | None, arch: VitArch, global_pool: str,
            source: str) -> FeatureRule | None:
    """The rule `model.features=option` means for this encoder (None: the paper's, which the model reads already);
    one error line for an unknown option or a format without a method rule."""
    check_option(option)
    if option == "paper":
        return None
    if probe not in PROBES:
        raise MaeBenchError(f"model.features=method is for the linear probe and k-NN, not {probe}")
    if method is None:
        raise MaeBenchError(f"{source} records no method feature rule (model.features=method); use "
                            f"model.features=paper")
    if global_pool != "token":
        raise MaeBenchError("model.features=method reads the method's own tokens; leave model.global_pool at token")
    rule = method.rule(probe, arch)
    rule.check(arch)
    return rule
