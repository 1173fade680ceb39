"""HemoNet from "Leukemia Cancer Classification via Attention-Guided Deep Networks".

224x224 input; four blocks Conv3x3-BN-ReLU-[CBAM in blocks 2 and 4]-MaxPool2 with 32/64/128/256
channels; flatten 14x14x256 = 50,176 -> Linear 512 -> ReLU -> Dropout 0.3 -> Linear classes.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehemo.train.blocks import CBAM, conv_bn_relu, dense_on_map
from edgehemo.train.registry import register_model

PAPER = "Leukemia Cancer Classification via Attention-Guided Deep Networks"
CHANNELS = (32, 64, 128, 256)
CBAM_BLOCKS = (2, 4)


class HemoNet(nn.Module):
    """Four conv blocks with CBAM in blocks 2 and 4 and a dense classifier."""

    def __init__(
        self,
        *,
        num_classes: int = 3,
        input_size: int = 224,
        in_channels: int = 3,
        hidden: int = 512,
        dropout: float = 0.3,
        reduction: int = 8,
        global_pool: bool = False,
    ) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {input_size}")
        blocks: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(CHANNELS, start=1):
            layers: list[nn.Module] = [conv_bn_relu(previous, width)]
            if index in CBAM_BLOCKS:
                layers.append(CBAM(width, reduction=reduction))
            layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.features = nn.Sequential(*blocks)
        side = 1 if global_pool else input_size // 16
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity(),
            nn.Flatten(),
            nn.Linear(previous * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool, _, first_dense, *rest = self.classifier  # rest: ReLU, Dropout, Linear
        hidden = dense_on_map(first_dense, pool(self.features(x)))
        for layer in rest:
            hidden = layer(hidden)
        return hidden


@register_model(input_size=224, family="hemonet", paper=PAPER)
def hemonet(*, num_classes: int = 3, input_size: int = 224, **kwargs: object) -> HemoNet:
    """HemoNet as published (ALL/AML/MM by default; num_classes is a parameter)."""
    return HemoNet(num_classes=num_classes, input_size=input_size, **kwargs)



@register_model(input_size=224, family="hemonet", paper=PAPER + " (compact: global pooling)")
def hemonet_gap(*, num_classes: int = 3, input_size: int = 224, **kwargs: object) -> HemoNet:
    """HemoNet with global average pooling before the classifier: its 50,176x512 dense layer
    (25.7M of ~26M parameters) becomes 256x512."""
    return HemoNet(num_classes=num_classes, input_size=input_size, global_pool=True, **kwargs)
