"""Attention blocks used by the compact CNNs: squeeze-and-excitation, spatial attention, CBAM.

CBAM follows Woo et al. (2018): channel attention (average- and max-pooled descriptors through a
shared MLP, summed, sigmoid), then spatial attention (channel-wise mean and max, a 7x7 convolution,
sigmoid). SE follows Hu et al. (2018). Each block keeps the tensor shape.

The pooling steps are written with pooling and convolution operators rather than reductions
(global average pool instead of `mean`, a max pool over the whole map instead of `amax`, a fixed
1x1 convolution for the channel mean, a max pool over the channel axis for the channel max). The
result is the same function, but every operator then has an int8 kernel in onnxruntime and
TFLite, so a quantised model stays in int8 end to end instead of bouncing to float around each
attention block. The TFLite route needs the reductions instead (TFLite has int8 MEAN and
REDUCE_MAX, and onnx2tf's NCHW->NHWC rewrite breaks a pool along the channel axis):
`reductions_for_export()` switches to them while that ONNX graph is traced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

_USE_REDUCTIONS: ContextVar[bool] = ContextVar("use_reductions", default=False)


@contextmanager
def reductions_for_export() -> Iterator[None]:
    """Trace the attention pooling as ReduceMean/ReduceMax (same function, other operators)."""
    token = _USE_REDUCTIONS.set(True)
    try:
        yield
    finally:
        _USE_REDUCTIONS.reset(token)


def global_average(x: torch.Tensor) -> torch.Tensor:
    """Mean over H and W, kept as (N, C, 1, 1); exports as GlobalAveragePool."""
    if _USE_REDUCTIONS.get():
        return x.mean(dim=(2, 3), keepdim=True)
    return F.adaptive_avg_pool2d(x, 1)


def global_max(x: torch.Tensor) -> torch.Tensor:
    """Max over H and W, kept as (N, C, 1, 1); exports as a MaxPool over the whole map."""
    if _USE_REDUCTIONS.get():
        return x.amax(dim=(2, 3), keepdim=True)
    # int(): the ONNX tracer records the map size as a constant (inputs have a fixed size).
    return F.max_pool2d(x, kernel_size=(int(x.shape[2]), int(x.shape[3])))


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over channels, (N, 1, H, W); a 1x1 convolution with weights 1/C."""
    if _USE_REDUCTIONS.get():
        return x.mean(dim=1, keepdim=True)
    channels = int(x.shape[1])
    weight = torch.full((1, channels, 1, 1), 1.0 / channels, dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight)


def channel_max(x: torch.Tensor) -> torch.Tensor:
    """Max over channels, (N, 1, H, W); a max pool along the channel axis."""
    if _USE_REDUCTIONS.get():
        return x.amax(dim=1, keepdim=True)
    channels, height, width = (int(d) for d in x.shape[1:])
    stacked = x.reshape(-1, 1, channels, height * width)
    return F.max_pool2d(stacked, kernel_size=(channels, 1)).reshape(-1, 1, height, width)


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
        return self.gate(self.fc2(self.act(self.fc1(global_average(x)))))

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
        return self.gate(self.mlp(global_average(x)) + self.mlp(global_max(x)))

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
        descriptor = torch.cat([channel_mean(x), channel_max(x)], dim=1)
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
