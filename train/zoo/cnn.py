"""The compact CNNs of "Efficient Deep Learning Architectures for Blood Cell Classification".

Four Conv3x3-BN-ReLU blocks (32/64/128/256 channels), each followed by 2x2 max pooling and, in the
attention variants, an attention block; flatten (4x4x256 = 4096 for a 64x64 input), dropout 0.2
(attention variants), and one linear output layer.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehemo.train.blocks import attention_stages, dense_on_map
from edgehemo.train.registry import register_model

PAPER = "Efficient Deep Learning Architectures for Blood Cell Classification"
CHANNELS = (32, 64, 128, 256)


class CompactCNN(nn.Module):
    """Stacked conv blocks with optional attention after each pooling step."""

    def __init__(
        self,
        *,
        attention: str = "none",
        num_classes: int = 8,
        input_size: int = 64,
        in_channels: int = 3,
        channels: tuple[int, ...] = CHANNELS,
        dropout: float = 0.2,
        reduction: int = 4,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.features, side = attention_stages(in_channels, channels, input_size=input_size,
                                               attention=attention, reduction=reduction,
                                               norm=norm)
        self.dropout = nn.Dropout(dropout) if attention != "none" and dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels[-1] * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dense_on_map(self.classifier, self.features(x), self.dropout)


@register_model(input_size=64, family="compact", paper=PAPER)
def cnn(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> CompactCNN:
    """Plain four-block CNN (no attention)."""
    return CompactCNN(attention="none", num_classes=num_classes, input_size=input_size, **kwargs)


@register_model(input_size=64, family="compact", paper=PAPER)
def se_cnn(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> CompactCNN:
    """CNN with a squeeze-and-excitation block after each pooled block."""
    return CompactCNN(attention="se", num_classes=num_classes, input_size=input_size, **kwargs)


@register_model(input_size=64, family="compact", paper=PAPER)
def sa_cnn(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> CompactCNN:
    """CNN with a spatial-attention block after each pooled block."""
    return CompactCNN(attention="sa", num_classes=num_classes, input_size=input_size, **kwargs)


@register_model(input_size=64, family="compact", paper=PAPER)
def cbam_cnn(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> CompactCNN:
    """CNN with a CBAM block after each pooled block."""
    return CompactCNN(attention="cbam", num_classes=num_classes, input_size=input_size, **kwargs)


@register_model(input_size=64, family="compact", paper=PAPER)
def cbam_cnn_gn(*, num_classes: int = 8, input_size: int = 64, **kwargs: object) -> CompactCNN:
    """CBAM-CNN with GroupNorm in place of BatchNorm (same parameter count): each image is
    normalised by its own statistics, for microscopes the training data never saw."""
    return CompactCNN(attention="cbam", num_classes=num_classes, input_size=input_size,
                      norm="group", **kwargs)
