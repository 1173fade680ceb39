"""Empirical bias correction of a QDQ int8 ONNX graph against the float graph it was made from.

Rounding weights and activations to int8 shifts the mean of each convolution's output a little,
channel by channel, and the shift adds up over the layers. Following Nagel et al. ("Data-Free
Quantization Through Weight Equalization and Bias Correction", 2019; the empirical variant),
each quantised Conv/Gemm in turn, in graph order, has its per-channel output mean over the
calibration images measured in the float graph and in the int8 graph (whose earlier layers are
already corrected), and its int32 bias moved by the difference. Only bias codes change: the
weights, the scales and the graph's operators stay as the quantiser wrote them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

logger = logging.getLogger(__name__)

INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class BiasShift:
    """What the correction moved in one layer, in the layer's output units."""

    layer: str
    channels: int
    mean_abs_shift: float
    mean_abs_output: float


@dataclass(frozen=True)
class QuantisedLayer:
    """A quantised Conv or Gemm and the initializers of its int32 bias codes and their scale."""

    node: onnx.NodeProto
    bias_codes: str
    bias_scale: str


def moved_codes(codes: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int32 bias `codes` (per channel, at `scale` per code) less `shift` in output units."""
    moved = codes.astype(np.int64) - np.round(shift / scale.astype(np.float64)).astype(np.int64)
    return np.clip(moved, INT32.min, INT32.max).astype(np.int32)


def quantised_layers(int8: onnx.ModelProto) -> list[QuantisedLayer]:
    """Conv and Gemm nodes whose weight and bias are dequantised from integer codes, in graph
    order (the quantiser's topological order). Layers left in float are not among them."""
    producer = {out: node for node in int8.graph.node for out in node.output}
    layers = []
    for node in int8.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        weight, bias = producer.get(node.input[1]), producer.get(node.input[2])
        if (weight is None or bias is None or weight.op_type != "DequantizeLinear"
                or bias.op_type != "DequantizeLinear"):
            continue
        layers.append(QuantisedLayer(node, bias.input[0], bias.input[1]))
    return layers


def _channel_means(model: onnx.ModelProto, outputs: list[str], batches: list[np.ndarray],
                   input_name: str, threads: int) -> list[np.ndarray]:
    """Per-channel mean over images and positions of each named tensor (N x C x ... ).

    Exposing a tensor as a graph output keeps onnxruntime from fusing its producer into an
    integer kernel; the producer then runs in float on the dequantised inputs, which gives the
    same sums as the integer kernel before its output is requantised.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in outputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    sums = [np.zeros(0)] * len(outputs)
    seen = 0
    for batch in batches:
        results = session.run(outputs, {input_name: batch})
        for i, tensor in enumerate(results):
            per_image = tensor.reshape(tensor.shape[0], tensor.shape[1], -1).mean(axis=2)
            sums[i] = per_image.sum(axis=0, dtype=np.float64) + (sums[i] if seen else 0.0)
        seen += len(batch)
    return [total / seen for total in sums]


def mean_output_errors(float_model: onnx.ModelProto, int8: onnx.ModelProto,
                       batches: list[np.ndarray], *, input_name: str,
                       threads: int = 0) -> dict[str, np.ndarray]:
    """Each quantised layer's per-channel output mean over `batches`, int8 minus float, all
    layers measured in one pass (each reading the int8 outputs of the layers before it)."""
    layers = quantised_layers(int8)
    float_outputs = _float_outputs(float_model, layers)
    reference = _channel_means(float_model, [float_outputs[layer.node.name] for layer in layers],
                               batches, input_name, threads)
    measured = _channel_means(int8, [layer.node.output[0] for layer in layers], batches,
                              input_name, threads)
    return {layer.node.name: got - want
            for layer, got, want in zip(layers, measured, reference, strict=True)}


def _float_outputs(float_model: onnx.ModelProto, layers: list[QuantisedLayer]) -> dict[str, str]:
    outputs = {node.name: node.output[0] for node in float_model.graph.node}
    missing = [layer.node.name for layer in layers if layer.node.name not in outputs]
    if missing:
        raise ValueError(f"the float graph has no node {missing[0]!r}: bias correction needs "
                         "the float graph the int8 one was quantised from")
    return outputs


def correct_biases(float_model: onnx.ModelProto, int8: onnx.ModelProto,
                   batches: list[np.ndarray], *, input_name: str,
                   threads: int = 0) -> list[BiasShift]:
    """Move the int32 bias codes of `int8` (in place) so that each quantised layer's per-channel
    output mean over `batches` (preprocessed calibration images) matches `float_model`'s.

    The two graphs must come from the same export: layers are matched by node name.
    """
    if not batches:
        raise ValueError("bias correction needs at least one batch of calibration images")
    layers = quantised_layers(int8)
    float_outputs = _float_outputs(float_model, layers)
    references = _channel_means(float_model, [float_outputs[layer.node.name] for layer in layers],
                                batches, input_name, threads)
    initializers = {init.name: init for init in int8.graph.initializer}
    shifts = []
    for layer, reference in zip(layers, references, strict=True):
        (measured,) = _channel_means(int8, [layer.node.output[0]], batches, input_name, threads)
        error = measured - reference
        codes = initializers[layer.bias_codes]
        scale = numpy_helper.to_array(initializers[layer.bias_scale])
        codes.CopyFrom(numpy_helper.from_array(
            moved_codes(numpy_helper.to_array(codes), error, scale), codes.name))
        shifts.append(BiasShift(layer.node.name, len(error), float(np.abs(error).mean()),
                                float(np.abs(reference).mean())))
        logger.debug("bias correction %s: mean |shift| %.4g (mean |output| %.4g)",
                     layer.node.name, shifts[-1].mean_abs_shift, shifts[-1].mean_abs_output)
    return shifts
