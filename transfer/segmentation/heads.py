"""Feature2Pyramid neck, UPerHead and FCNHead, following mmsegmentation's designs on plain PyTorch."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.misc import Conv2dNormActivation


def conv_bn_relu(cin: int, cout: int, k: int) -> nn.Module:
    """mmseg's ConvModule(conv, BN, ReLU): bias-free conv, 'same' padding, and ConvModule's init (mmcv's
    kaiming_init: kaiming-normal, mode fan_out, relu gain; BN weight 1, bias 0)."""
    m = Conv2dNormActivation(cin, cout, k, padding=k // 2, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU)
    nn.init.kaiming_normal_(m[0].weight, mode="fan_out", nonlinearity="relu")
    return m


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Feature2Pyramid(nn.Module):
    """Four same-stride ViT maps -> strides x/4, x/2, x, 2x of the patch stride (rescales 4, 2, 1, 0.5):
    ConvT-BN-GELU-ConvT, ConvT, identity, max-pool."""

    def __init__(self, dim: int, rescales=(4, 2, 1, 0.5)):
        super().__init__()
        ops = {4: lambda: nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.GELU(),
                                        nn.ConvTranspose2d(dim, dim, 2, 2)),
               2: lambda: nn.ConvTranspose2d(dim, dim, 2, 2), 1: nn.Identity, 0.5: lambda: nn.MaxPool2d(2, 2)}
        if any(r not in ops for r in rescales):
            raise ValueError(f"rescales must be among 4, 2, 1, 0.5, got {rescales}")
        self.ops = nn.ModuleList(ops[r]() for r in rescales)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [op(f) for op, f in zip(self.ops, feats)]


class DecodeHead(nn.Module):
    """mmseg's BaseDecodeHead classifier: Dropout2d then a 1x1 conv (normal std 0.01, zero bias)."""

    def __init__(self, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))


class UPerHead(DecodeHead):
    """UperNet: a pyramid pooling module (pool scales 1, 2, 3, 6) on the coarsest level, a top-down FPN
    (1x1 lateral, 3x3 output convs), all levels upsampled to the finest and fused by a 3x3 conv."""

    def __init__(self, in_channels: list[int], channels: int, num_classes: int, pool_scales=(1, 2, 3, 6),
                 dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        self.psp_modules = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_channels[-1], channels, 1))
                                         for s in pool_scales)
        self.bottleneck = conv_bn_relu(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = conv_bn_relu(len(in_channels) * channels, channels, 3)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x] + [_up(m(x), x.shape[2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(feats[i]) for i, conv in enumerate(self.lateral_convs)] + [self.psp_forward(feats[-1])]
        for i in range(len(laterals) - 1, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + _up(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [_up(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(DecodeHead):
    """The auxiliary head: `num_convs` 3x3 ConvModules on one level, then the classifier (concat_input=False)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_convs: int = 1, dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        self.convs = nn.Sequential(*(conv_bn_relu(in_channels if i == 0 else channels, channels, 3)
                                     for i in range(num_convs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.convs(x))
