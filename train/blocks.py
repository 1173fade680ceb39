"""Attention blocks used by the compact CNNs: squeeze-and-excitation, spatial attention, CBAM.

CBAM follows Woo et al. (2018): channel attention (average- and max-pooled descriptors through a
shared MLP, summed, sigmoid), then spatial attention (channel-wise mean and max, a 7x7 convolution,
sigmoid). SE follows Hu et al. (2018). Each block keeps the tensor shape.

The pooling steps are written with pooling and convolution operators rather than reductions
(global average pool instead of `mean`, a max pool over the whole map instead of `amax`, a fixed
1x1 convolution for the channel mean, a max pool over the channel axis for the channel max). The
result is the same function, but every operator then has an int8 kernel in onnxruntime and
TFLite, so a quantised model stays in int8 end to end instead of bouncing to float around each
attention block.

While a graph is traced for export, `attention_graph(kind)` picks the operators that run fastest
on the target runtime (same function, other operators; bench/bench_ort_ops.py shows why):

- "eager" (the default, also the fp32 ONNX graph): the pooling operators above.
- "ort-int8" (the graph onnxruntime quantises): the channel max is a reduction over the last
  axis of a channels-last view, which onnxruntime runs on the uint8 tensor in the NHWC layout
  of its int8 convolutions (3x faster than a uint8 max pool along that axis, itself ~2x faster
  than one across it; the quantiser keeps its input's scale, see edgehemo.export.quantize); and
  the shared channel MLP runs the average and max descriptors as two groups of one convolution
  pair instead of four convolutions and an add (fewer small operators, each of which costs
  microseconds).
- "tflite": reductions (TFLite has int8 MEAN and REDUCE_MAX, and onnx2tf's NCHW->NHWC rewrite
  breaks a pool along the channel axis); and the spatial gate's 7x7 convolution runs on strips of
  up to 8 pixels along each row (`strip_convolution`): with 2 input channels and 1 output channel
  LiteRT's int8 convolution wastes most of its vector lanes, so on a 32x32 map (0.1 M
  multiply-adds) it took ~30 us, a third of the next 3x3 convolution (18.9 M). The models'
  dense layers take their map flattened channels-last (`dense_on_map`), which spares onnx2tf a
  transpose that the Edge TPU compiler cannot map.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import product
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

AttentionGraph = Literal["eager", "ort-int8", "tflite"]
_GRAPH: ContextVar[AttentionGraph] = ContextVar("attention_graph", default="eager")


@contextmanager
def attention_graph(kind: AttentionGraph) -> Iterator[None]:
    """Trace the attention blocks with the operators that suit `kind` (same function)."""
    token = _GRAPH.set(kind)
    try:
        yield
    finally:
        _GRAPH.reset(token)


def _use_reductions() -> bool:
    return _GRAPH.get() == "tflite"


def global_average(x: torch.Tensor) -> torch.Tensor:
    """Mean over H and W, kept as (N, C, 1, 1); exports as GlobalAveragePool."""
    if _use_reductions():
        return x.mean(dim=(2, 3), keepdim=True)
    return F.adaptive_avg_pool2d(x, 1)


def global_max(x: torch.Tensor) -> torch.Tensor:
    """Max over H and W, kept as (N, C, 1, 1); exports as a MaxPool over the whole map."""
    if _use_reductions():
        return x.amax(dim=(2, 3), keepdim=True)
    # int(): the ONNX tracer records the map size as a constant (inputs have a fixed size).
    return F.max_pool2d(x, kernel_size=(int(x.shape[2]), int(x.shape[3])))


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over channels, (N, 1, H, W); a 1x1 convolution with weights 1/C."""
    if _use_reductions():
        return x.mean(dim=1, keepdim=True)
    channels = int(x.shape[1])
    weight = torch.full((1, channels, 1, 1), 1.0 / channels, dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight)


def channel_max(x: torch.Tensor) -> torch.Tensor:
    """Max over channels, (N, 1, H, W); a max pool along the channel axis."""
    if _use_reductions():
        return x.amax(dim=1, keepdim=True)
    if _GRAPH.get() == "ort-int8":
        return x.permute(0, 2, 3, 1).amax(dim=3, keepdim=True).permute(0, 3, 1, 2)
    channels, height, width = (int(d) for d in x.shape[1:])
    stacked = x.reshape(-1, 1, channels, height * width)
    return F.max_pool2d(stacked, kernel_size=(channels, 1)).reshape(-1, 1, height, width)


# Strips of up to 8 pixels along a row turn the 7x7 gate convolution on a 32x32 map into a 7x3 one
# on 32x4 with 8 input and 8 output channels per descriptor map: ~3x the multiply-adds, which full
# vector lanes more than repay; and in channels-last memory a map and its strips are the same
# bytes, so the way into strips and back is a reshape.
GATE_STRIPS = (8, 4, 2)


def gate_strip(width: int) -> int | None:
    """The strip length for a map `width` pixels wide, or None for the plain convolution."""
    return next((strip for strip in GATE_STRIPS if width % strip == 0), None)


def strip_kernel(weight: np.ndarray, strip: int) -> np.ndarray:
    """The kernel that computes the same-padded convolution `weight` (out, in, k, k; k odd) on
    strips: (strip * out, strip * in, k, 2 * reach + 1), for a convolution with padding
    (k // 2, reach) whose channel p * out + o (input: p * in + c) is channel o (c) of pixel p of
    each strip of `strip` pixels along a row, the channels-last order of a strip's bytes."""
    outputs, inputs, size = weight.shape[0], weight.shape[1], weight.shape[-1]
    radius = size // 2
    reach = -(-radius // strip)  # neighbouring strips a tap can land in, either side
    kernel = np.zeros((strip * outputs, strip * inputs, size, 2 * reach + 1), dtype=weight.dtype)
    for out, tap in product(range(strip), range(size)):
        offset = out + tap - radius  # input column relative to the output strip's first pixel
        pixel = offset % strip
        kernel[out * outputs:(out + 1) * outputs, pixel * inputs:(pixel + 1) * inputs, :,
               offset // strip + reach] = weight[:, :, :, tap]
    return kernel


def to_strips(x: torch.Tensor, strip: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, strip * C, H, W / strip). The permutes are layout changes onnx2tf
    drops (channels-last is its layout), leaving one RESHAPE."""
    n, c, h, w = (int(d) for d in x.shape)
    return x.permute(0, 2, 3, 1).reshape(n, h, w // strip, strip * c).permute(0, 3, 1, 2)


def from_strips(x: torch.Tensor, channels: int = 1) -> torch.Tensor:
    """The inverse of `to_strips` for a map of `channels` channels."""
    n, c, h, blocks = (int(d) for d in x.shape)
    strip = c // channels
    return x.permute(0, 2, 3, 1).reshape(n, h, blocks * strip, channels).permute(0, 3, 1, 2)


def strip_convolution(conv: nn.Conv2d, maps: list[torch.Tensor], strip: int) -> torch.Tensor:
    """`conv(torch.cat(maps, 1))` (one output channel, odd square kernel, same padding, one
    input channel per map) computed on strips of `strip` pixels along each row: one convolution
    per map, summed. Concatenated, the maps would share one int8 scale (the channel mean's range
    is narrower than the max's) and cost LiteRT more, pixel by pixel, than the convolution."""
    if len(maps) != conv.in_channels:
        raise ValueError(f"{len(maps)} maps for a convolution of {conv.in_channels} channels")
    weight = conv.weight.detach().cpu().numpy()
    bias = conv.bias.detach().repeat(strip) if conv.bias is not None else None
    terms = []
    for channel, part in enumerate(maps):
        kernel = torch.from_numpy(strip_kernel(weight[:1, channel:channel + 1], strip))
        kernel = kernel.to(part.device, part.dtype)
        terms.append(F.conv2d(to_strips(part, strip), kernel, bias if channel == 0 else None,
                              padding=(kernel.shape[2] // 2, kernel.shape[3] // 2)))
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return from_strips(out)


def dense_on_map(linear: nn.Linear, x: torch.Tensor,
                 dropout: nn.Module | None = None) -> torch.Tensor:
    """`linear(dropout(torch.flatten(x, 1)))` for a feature map `x` of shape (N, C, H, W).

    In the TFLite graph the map is flattened channels-last and the weight's columns are permuted
    to match (the same function): onnx2tf then adds no TRANSPOSE back to channels-first order
    before the dense layer, an operator the Edge TPU compiler does not map, so the dense layer
    would have run on the CPU.
    """
    dropout = dropout if dropout is not None else nn.Identity()
    if _GRAPH.get() != "tflite":
        return linear(dropout(torch.flatten(x, 1)))
    n, c, h, w = (int(d) for d in x.shape)
    weight = linear.weight.reshape(-1, c, h, w).permute(0, 2, 3, 1).reshape(-1, c * h * w)
    return F.linear(dropout(x.permute(0, 2, 3, 1).reshape(n, -1)), weight, linear.bias)


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
        if _GRAPH.get() == "ort-int8":
            return self.gate(self._shared_mlp_as_groups(x))
        return self.gate(self.mlp(global_average(x)) + self.mlp(global_max(x)))

    def _shared_mlp_as_groups(self, x: torch.Tensor) -> torch.Tensor:
        """mlp(avg) + mlp(max) as one grouped convolution pair over [avg; max].

        The first layer runs on both descriptors as two groups with the same weights; the second
        layer's weights are repeated along its input so that it sums the two hidden vectors, and
        its bias counts twice.
        """
        first, second = self.mlp[0], self.mlp[2]
        assert isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d)
        assert first.bias is not None and second.bias is not None
        descriptors = torch.cat([global_average(x), global_max(x)], dim=1)
        hidden = F.relu(F.conv2d(descriptors, first.weight.repeat(2, 1, 1, 1),
                                 first.bias.repeat(2), groups=2))
        return F.conv2d(hidden, second.weight.repeat(1, 2, 1, 1), 2 * second.bias)

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
        maps = [channel_mean(x), channel_max(x)]
        strip = gate_strip(int(x.shape[3]))
        if _GRAPH.get() == "tflite" and strip is not None:
            return self.gate(strip_convolution(self.conv, maps, strip))
        return self.gate(self.conv(torch.cat(maps, dim=1)))

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


NORMS = ("batch", "group")
GROUP_NORM_GROUPS = 8


def conv_bn_relu(in_channels: int, out_channels: int, *, norm: str = "batch") -> nn.Sequential:
    """The papers' conv block: Conv3x3 (same padding) + BatchNorm + ReLU; `norm="group"` puts
    GroupNorm (8 groups) in BatchNorm's place, which normalises each image by its own
    statistics instead of the training set's (Tsutsui et al., ICASSP 2023: the swap that held
    up best on other labs' cells)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    layer: nn.Module = (nn.BatchNorm2d(out_channels) if norm == "batch"
                        else nn.GroupNorm(min(GROUP_NORM_GROUPS, out_channels), out_channels))
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        layer,
        nn.ReLU(inplace=True),
    )


def attention_stages(
    in_channels: int,
    widths: tuple[int, ...],
    *,
    input_size: int,
    attention: str,
    reduction: int = 4,
    convs_per_stage: int = 1,
    norm: str = "batch",
) -> tuple[nn.Sequential, int]:
    """The papers' feature extractor: per width, `convs_per_stage` conv blocks, 2x2 max pooling,
    then the attention block. Returns the stages and the side of the last feature map."""
    downscale = 2 ** len(widths)
    if input_size % downscale:
        raise ValueError(f"input_size must be a multiple of {downscale}, got {input_size}")
    stages: list[nn.Module] = []
    previous = in_channels
    for width in widths:
        convs = [conv_bn_relu(previous if i == 0 else width, width, norm=norm)
                 for i in range(convs_per_stage)]
        stages.append(nn.Sequential(*convs, nn.MaxPool2d(2),
                                    make_attention(attention, width, reduction=reduction)))
        previous = width
    return nn.Sequential(*stages), input_size // downscale
