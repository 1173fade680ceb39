"""Checkpoint -> ONNX fp32, verified against torch on real images."""

from __future__ import annotations

import copy
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from edgehemo.errors import CheckpointError
from edgehemo.store.atomic import write_atomically
from edgehemo.train.blocks import (
    AttentionGraph,
    attention_graph,
    from_strips,
    strip_kernel,
    to_strips,
)

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class _PaddedInput(nn.Module):
    """`model` whose first convolution takes the RGB input plus a zero channel."""

    def __init__(self, model: nn.Module, extra_channels: int) -> None:
        super().__init__()
        self.model = model
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(F.pad(x, (0, 0, 0, 0, 0, self.extra_channels)))


def pad_first_convolution(model: nn.Module, input_size: int, channels: int = 4) -> nn.Module:
    """The same function with the input padded to `channels` by zeros, for onnxruntime int8.

    onnxruntime's int8 convolution packs input channels in groups; with 3 of them the first layer
    ran 2.7x slower than with 4 (bench/bench_ort_ops.py), and the zero channel, with zero weights,
    changes nothing. Applied only where the first convolution is the first thing the input meets
    (checked on a random batch); otherwise the model is returned unchanged.
    """
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.in_channels != 3 or first.groups != 1 or channels <= 3:
        return model
    padded = copy.deepcopy(model)
    conv = next(m for m in padded.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.weight = nn.Parameter(F.pad(conv.weight, (0, 0, 0, 0, 0, channels - 3)))
    conv.in_channels = channels
    wrapped = _PaddedInput(padded, channels - 3).eval()
    probe = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(wrapped(probe), model(probe), atol=1e-5, rtol=1e-4)
    return wrapped if same else model


FIRST_CONVOLUTION_STRIP = 2


class _StripConvBnRelu(nn.Module):
    """Conv3x3 + BatchNorm (eval) + ReLU computed on strips of `strip` pixels along each row."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d, strip: int) -> None:
        super().__init__()
        scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
        bias = norm.bias.detach() - norm.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias.detach() * scale
        weight = (conv.weight.detach() * scale[:, None, None, None]).cpu().numpy()
        kernel = torch.from_numpy(strip_kernel(weight, strip))
        self.register_buffer("kernel", kernel)
        self.register_buffer("bias", bias.repeat(strip))
        self.padding = (kernel.shape[2] // 2, kernel.shape[3] // 2)
        self.strip, self.channels = strip, conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(to_strips(x, self.strip), self.kernel, self.bias, padding=self.padding)
        return from_strips(F.relu(out), self.channels)


def _is_conv_bn_relu(block: nn.Module) -> bool:
    if not isinstance(block, nn.Sequential) or len(block) != 3:
        return False
    conv, norm, relu = block
    return (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
            and isinstance(relu, nn.ReLU) and conv.groups == 1 and conv.kernel_size[0] % 2 == 1
            and conv.kernel_size[0] == conv.kernel_size[1] and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.padding == (conv.kernel_size[0] // 2,) * 2
            and conv.padding_mode == "zeros")


def strip_first_convolution(model: nn.Module, input_size: int,
                            strip: int = FIRST_CONVOLUTION_STRIP) -> nn.Module:
    """The same function with the first Conv-BN-ReLU on strips of `strip` pixels, for TFLite.

    LiteRT's int8 convolution fills few of its vector lanes with the image's 3 channels: a lone
    3 -> 32 convolution at 64x64 ran 2-3x slower than the same layer on strips of 2 pixels
    (6 channels in, 64 out, twice the multiply-adds; bench/build_attention_variants.py). In
    channels-last memory, TFLite's layout, the image and its strips are the same bytes, so the
    way in and the way out are each a RESHAPE (see `strip_convolution` in train/blocks.py, which
    does the same for the spatial gates). BatchNorm is folded into the strip kernel. Applied only
    where that block is the first thing the input meets (checked on a random batch); otherwise
    the model is returned unchanged.
    """
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.in_channels != 3 or input_size % strip:
        return model
    stripped = copy.deepcopy(model)
    first = next(m for m in stripped.modules() if isinstance(m, nn.Conv2d))
    name = next((name for name, block in stripped.named_modules()
                 if name and _is_conv_bn_relu(block) and block[0] is first), None)
    if name is None:
        return model
    parent_name, _, attribute = name.rpartition(".")
    block = stripped.get_submodule(name)
    setattr(stripped.get_submodule(parent_name), attribute,
            _StripConvBnRelu(block[0], block[1], strip))
    stripped.eval()
    probe = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(stripped(probe), model(probe), atol=1e-4, rtol=1e-4)
    return stripped if same else model


def export_onnx(model: nn.Module, input_size: int, path: Path, *,
                graph: AttentionGraph = "eager") -> None:
    """Export `model` (eval mode) with a dynamic batch axis; written atomically.

    `graph` chooses the operators of the attention blocks (see train/blocks.py): "eager" for the
    fp32 ONNX artifact, "ort-int8" for the graph that onnxruntime quantises (its input is also
    padded to 4 channels, see `pad_first_convolution`), "tflite" for the graph that onnx2tf
    converts, whose batch is fixed at 1 (TFLite files have static shapes, and the row-strip
    reshapes are traced with the batch as a constant) and whose first Conv-BN-ReLU runs on strips
    of the image (`strip_first_convolution`). All three compute the same function.
    """
    model = model.eval().to(memory_format=torch.contiguous_format)
    if graph == "ort-int8":
        model = pad_first_convolution(model, input_size)
    elif graph == "tflite":
        model = strip_first_convolution(model, input_size)
    example = torch.zeros(1, 3, input_size, input_size)
    buffer = io.BytesIO()
    # The TorchScript exporter: it needs no onnxscript and gives a plain graph of standard ops
    # for these conv nets, which is what the quantiser and the runtimes handle best.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        with attention_graph(graph):
            torch.onnx.export(
                model,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=(None if graph == "tflite"
                              else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}),
                opset_version=OPSET,
                dynamo=False,
            )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    write_atomically(path, buffer.getvalue())


def operator_summary(path: Path) -> dict[str, int]:
    """Count of each operator type in an ONNX graph."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@torch.no_grad()
def max_logit_difference(model: nn.Module, session_logits: np.ndarray, batch: np.ndarray) -> float:
    """Largest absolute difference between torch's logits and an ONNX runtime's on `batch`."""
    reference = model.eval()(torch.from_numpy(batch)).numpy()
    if reference.shape != session_logits.shape:
        raise CheckpointError(
            f"exported model gives shape {session_logits.shape}, torch {reference.shape}"
        )
    return float(np.abs(reference - session_logits).max())
