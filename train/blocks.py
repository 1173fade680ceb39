"""Attention blocks used by the compact CNNs: squeeze-and-excitation, spatial attention, CBAM.

CBAM follows Woo et al. (2018): channel attention (average- and max-pooled descriptors through a
shared MLP, summed, sigmoid), then spatial attention (channel-wise mean and max, a 7x7 convolution,
sigmoid). SE follows Hu et al. (2018). Each block keeps the tensor shape.
"""

from __future__ import annotations

import torch
from torch import nn


def _hidden_channels(channels: int, reduction: int) -> int:
    return max(1, channels // reduction)


class SqueezeExcitation(nn.Module):
    """Channel gate from a globally average-pooled descriptor through a bottleneck MLP."""

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        hidden = _hidden_channels(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Return the per-channel weights (N, C, 1, 1)."""
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return self.gate(self.fc2(self.act(self.fc1(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class ChannelAttention(nn.Module):
    """CBAM's channel attention: a shared MLP over average- and max-pooled descriptors."""

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        hidden = _hidden_channels(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )
        self.gate = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Return the per-channel weights (N, C, 1, 1)."""
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return self.gate(avg + peak)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class SpatialAttention(nn.Module):
    """Spatial gate from the channel-wise mean and max maps through one convolution."""

    def __init__(self, *, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)
        self.gate = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Return the spatial weights (N, 1, H, W)."""
        descriptor = torch.cat(
            [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1
        )
        return self.gate(self.conv(descriptor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention."""

    def __init__(self, channels: int, *, reduction: int = 4, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction=reduction)
        self.spatial = SpatialAttention(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


ATTENTION_KINDS = ("none", "se", "sa", "cbam")


def make_attention(kind: str, channels: int, *, reduction: int = 4) -> nn.Module:
    """Build the attention block named `kind` for a feature map of `channels` channels."""
    if kind == "none":
        return nn.Identity()
    if kind == "se":
        return SqueezeExcitation(channels, reduction=reduction)
    if kind == "sa":
        return SpatialAttention()
    if kind == "cbam":
        return CBAM(channels, reduction=reduction)
    raise ValueError(f"unknown attention kind {kind!r}; expected one of {ATTENTION_KINDS}")


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """The papers' conv block: Conv3x3 (same padding) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
