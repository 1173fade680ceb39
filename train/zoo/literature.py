"""The larger attention models of the leukaemia literature, written here without torchvision.

- `densenet201_cbam`: DenseNet-201 (growth 32, blocks 6/12/48/32) with a CBAM head: CBAM on the
  last feature map, global average pooling, batch norm, dense 512 and 128, dropout 0.25.
- `vgg19_mhsa`: VGG-19's 16 convolutions, then multi-head self-attention over the 7x7 grid of
  512-d tokens (8 heads, residual, layer norm), average of the tokens, dense 256; trained with
  focal loss in its paper (`--loss focal`).
- `efficientnetv2_s_ma`, `efficientnet_b3_ma`: the EfficientNet backbones with the multi-attention
  head: channel attention and spatial attention (3x3 conv) in parallel on the last feature map,
  each pooled by global weighted average pooling (a learnt spatial weight map), and the two
  combined by a learnt weighted average.

ImageNet weights cannot be downloaded here: `edgehemo train ... --pretrained PATH` loads a local
state dict (keys of this module's layout) and trains from scratch otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgehemo.train.blocks import CBAM, ChannelAttention
from edgehemo.train.registry import register_model

DENSENET_PAPER = "DenseNet-201 with CBAM for leukaemia classification"
VGG_PAPER = "VGG-19 with multi-head self-attention and focal loss"
EFFICIENT_PAPER = "Multi-attention EfficientNet for leukaemia classification"


# -- DenseNet-201 ------------------------------------------------------------------------------

class _DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, bottleneck * growth, 1, bias=False),
            nn.BatchNorm2d(bottleneck * growth), nn.ReLU(inplace=True),
            nn.Conv2d(bottleneck * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def _transition(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, channels // 2, 1, bias=False), nn.AvgPool2d(2))


class DenseNetCBAM(nn.Module):
    def __init__(self, *, num_classes: int, blocks: tuple[int, ...] = (6, 12, 48, 32),
                 growth: int = 32, stem: int = 64, bottleneck: int = 4,
                 dropout: float = 0.25) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1),
        ]
        channels = stem
        for index, count in enumerate(blocks):
            for _ in range(count):
                layers.append(_DenseLayer(channels, growth, bottleneck))
                channels += growth
            if index < len(blocks) - 1:
                layers.append(_transition(channels))
                channels //= 2
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.attention = CBAM(channels, reduction=16)
        self.head = nn.Sequential(
            nn.Flatten(), nn.BatchNorm1d(channels),
            nn.Linear(channels, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(512, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.features(x))
        return self.head(F.adaptive_avg_pool2d(x, 1))


@register_model(input_size=224, family="densenet", paper=DENSENET_PAPER)
def densenet201_cbam(*, num_classes: int = 3, input_size: int = 224,
                     **kwargs: object) -> DenseNetCBAM:
    """DenseNet-201 with a CBAM head (batch norm, dense 512 and 128, dropout 0.25)."""
    return DenseNetCBAM(num_classes=num_classes, **kwargs)


# -- VGG-19 + multi-head self-attention ----------------------------------------------------------

VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M")


class VGG19MHSA(nn.Module):
    def __init__(self, *, num_classes: int, heads: int = 8, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1),
                           nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.attention = nn.MultiheadAttention(channels, heads, dropout=0.1, batch_first=True)
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Sequential(nn.Linear(channels, 256), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.features(x).flatten(2).transpose(1, 2)  # (N, H*W, C)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        tokens = self.norm(tokens + attended)
        return self.head(tokens.mean(1))


@register_model(input_size=224, family="vgg", paper=VGG_PAPER)
def vgg19_mhsa(*, num_classes: int = 3, input_size: int = 224, **kwargs: object) -> VGG19MHSA:
    """VGG-19 with multi-head self-attention over its last feature map (use --loss focal)."""
    return VGG19MHSA(num_classes=num_classes, **kwargs)


# -- EfficientNet backbones with the multi-attention head ------------------------------------------

class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(scale))))


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class _MBConv(nn.Module):
    """Inverted residual (MBConv) or its fused variant (FusedMBConv, EfficientNetV2)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 se_ratio: float, fused: bool) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if fused:
            if expand == 1:
                layers.append(_conv_bn_act(cin, cout, kernel, stride))
            else:
                layers += [_conv_bn_act(cin, hidden, kernel, stride),
                           _conv_bn_act(hidden, cout, 1, act=False)]
        else:
            if expand != 1:
                layers.append(_conv_bn_act(cin, hidden, 1))
            layers.append(_conv_bn_act(hidden, hidden, kernel, stride, groups=hidden))
            if se_ratio:
                layers.append(_SqueezeExcite(hidden, max(1, int(cin * se_ratio))))
            layers.append(_conv_bn_act(hidden, cout, 1, act=False))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


# (fused, expand, kernel, stride, channels, layers, se_ratio)
EFFICIENTNETV2_S = ((True, 1, 3, 1, 24, 2, 0.0), (True, 4, 3, 2, 48, 4, 0.0),
                    (True, 4, 3, 2, 64, 4, 0.0), (False, 4, 3, 2, 128, 6, 0.25),
                    (False, 6, 3, 1, 160, 9, 0.25), (False, 6, 3, 2, 256, 15, 0.25))
EFFICIENTNET_B0 = ((False, 1, 3, 1, 16, 1, 0.25), (False, 6, 3, 2, 24, 2, 0.25),
                   (False, 6, 5, 2, 40, 2, 0.25), (False, 6, 3, 2, 80, 3, 0.25),
                   (False, 6, 5, 1, 112, 3, 0.25), (False, 6, 5, 2, 192, 4, 0.25),
                   (False, 6, 3, 1, 320, 1, 0.25))


def _round_channels(channels: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class MultiAttentionHead(nn.Module):
    """Channel and spatial (3x3 conv) attention in parallel, each pooled by global weighted
    average pooling, combined by a learnt weighted average, then the classifier."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction=16)
        self.spatial = nn.Sequential(nn.Conv2d(channels, channels // 8, 3, padding=1),
                                     nn.ReLU(inplace=True), nn.Conv2d(channels // 8, 1, 3,
                                                                      padding=1), nn.Sigmoid())
        self.pool_weights = nn.Conv2d(channels, 1, 1)  # GWAP: a learnt spatial weight map
        self.mix = nn.Parameter(torch.zeros(2))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def _gwap(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.pool_weights(x).flatten(2), dim=-1)  # (N, 1, H*W)
        return (x.flatten(2) * weights).sum(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        by_channel = self._gwap(self.channel(x))
        by_space = self._gwap(x * self.spatial(x))
        mix = torch.softmax(self.mix, 0)
        return self.classifier(mix[0] * by_channel + mix[1] * by_space)


class EfficientNetMA(nn.Module):
    def __init__(self, *, stages: tuple, num_classes: int, stem: int, head: int,
                 width: float = 1.0, depth: float = 1.0) -> None:
        super().__init__()
        stem = _round_channels(stem * width)
        layers: list[nn.Module] = [_conv_bn_act(3, stem, 3, 2)]
        channels = stem
        for fused, expand, kernel, stride, out, repeats, se in stages:
            out = _round_channels(out * width)
            for index in range(math.ceil(repeats * depth)):
                layers.append(_MBConv(channels, out, kernel, stride if index == 0 else 1,
                                      expand, se, fused))
                channels = out
        head = _round_channels(head * width) if width > 1 else head
        layers.append(_conv_bn_act(channels, head, 1))
        self.features = nn.Sequential(*layers)
        self.head = MultiAttentionHead(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model(input_size=224, family="efficientnet", paper=EFFICIENT_PAPER)
def efficientnetv2_s_ma(*, num_classes: int = 3, input_size: int = 224,
                        **kwargs: object) -> EfficientNetMA:
    """EfficientNetV2-S with the multi-attention head."""
    return EfficientNetMA(stages=EFFICIENTNETV2_S, num_classes=num_classes, stem=24, head=1280)


@register_model(input_size=224, family="efficientnet", paper=EFFICIENT_PAPER)
def efficientnet_b3_ma(*, num_classes: int = 3, input_size: int = 224,
                       **kwargs: object) -> EfficientNetMA:
    """EfficientNet-B3 (width 1.2, depth 1.4 of B0) with the multi-attention head."""
    return EfficientNetMA(stages=EFFICIENTNET_B0, num_classes=num_classes, stem=32, head=1280,
                          width=1.2, depth=1.4)
