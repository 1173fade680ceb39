"""VGG15 and its attention variants from "Efficient Deep Learning Architectures for Blood Cell
Classification": five stages of two Conv3x3-BN-ReLU blocks (32..512 channels), 2x2 max pooling and
an attention block after each stage, flatten (2x2x512 = 2048 for 64x64), then a dense head.

The paper gives the layer count (15) and ~7.2M parameters but not the head; ten conv layers plus a
2048->1024->256->classes head (dropout 0.2) gives 7.07M for the plain model and 7.25M with SE, which
matches the paper's figure.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehemo.train.blocks import attention_stages
from edgehemo.train.registry import register_model

PAPER = "Efficient Deep Learning Architectures for Blood Cell Classification"
CHANNELS = (32, 64, 128, 256, 512)
HEAD = (1024, 256)


class VGG15(nn.Module):
    """Five double-conv stages with optional attention after each pooling step."""

    def __init__(
        self,
        *,
        attention: str = "none",
        num_classes: int = 8,
        input_size: int = 64,
        in_channels: int = 3,
        dropout: float = 0.2,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        self.features, side = attention_stages(in_channels, CHANNELS, input_size=input_size,
                                               attention=attention, reduction=reduction,
                                               convs_per_stage=2)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = CHANNELS[-1] * side * side
        for width in HEAD:
            layers += [nn.Linear(width_in, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(input_size=64, family="vgg", paper=PAPER)
def vgg15(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> VGG15:
    """VGG15 without attention."""
    return VGG15(attention="none", num_classes=num_classes, input_size=input_size, **kwargs)


@register_model(input_size=64, family="vgg", paper=PAPER)
def se_vgg15(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> VGG15:
    """VGG15 with squeeze-and-excitation after each stage."""
    return VGG15(attention="se", num_classes=num_classes, input_size=input_size, **kwargs)


@register_model(input_size=64, family="vgg", paper=PAPER)
def sa_vgg15(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> VGG15:
    """VGG15 with spatial attention after each stage."""
    return VGG15(attention="sa", num_classes=num_classes, input_size=input_size, **kwargs)


@register_model(input_size=64, family="vgg", paper=PAPER)
def cbam_vgg15(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> VGG15:
    """VGG15 with CBAM after each stage."""
    return VGG15(attention="cbam", num_classes=num_classes, input_size=input_size, **kwargs)
