"""Empirical bias correction of a full-integer TFLite model against the fp32 TFLite model of the
same conversion: the TFLite counterpart of `bias_correction.py`.

Each convolution and fully connected layer in turn, in graph order, has its per-channel output
mean over the calibration images measured in the fp32 model and in the int8 model (whose earlier
layers are already corrected), and its int32 bias codes moved by the difference. The converter
fuses ReLU into the layer, so a fused layer's output is after the activation, where a bias shift
`d` moves the channel's mean by `d` times the share of its outputs that are positive (to first
order): there the shift is the error over that share, taken from the fp32 model, and a channel
that is positive less than `MIN_ACTIVE` of the time is left alone. Only bias codes change: the
weights, scales and operators (hence the Edge TPU compilation and the speed) stay as the
converter wrote them. Needs ai-edge-litert (its interpreter and flatbuffer schema).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edgehemo.device.backends.litert import model_input
from edgehemo.export.bias_correction import BiasShift, moved_codes

logger = logging.getLogger(__name__)

MIN_ACTIVE = 0.05
_LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}


@dataclass(frozen=True)
class TfliteLayer:
    """A convolution or fully connected operator with a bias: tensor indices and fused ReLU."""

    operator: int
    weight: int
    bias: int
    output: int
    fused_relu: bool


def biased_layers(model: Any) -> list[TfliteLayer]:
    """The layers of `model` (a `schema.ModelT`, first subgraph) that carry a bias, in order."""
    graph = model.subgraphs[0]
    layers = []
    for index, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if name not in _LAYER_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        activation = getattr(op.builtinOptions, "fusedActivationFunction", 0)
        layers.append(TfliteLayer(index, int(op.inputs[1]), int(op.inputs[2]),
                                  int(op.outputs[0]),
                                  activation != schema.ActivationFunctionType.NONE))
    return layers


def _output_statistics(content: bytes, tensors: list[int], images: np.ndarray
                       ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-channel (last axis) mean of each tensor over `images` (NHWC float, the model's
    preprocessing), and the share of its values above zero."""
    interpreter = Interpreter(model_content=content, num_threads=None,
                              experimental_op_resolver_type=(
                                  OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    details = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    means = [np.zeros(0)] * len(tensors)
    active = [np.zeros(0)] * len(tensors)
    for number, image in enumerate(images):
        interpreter.set_tensor(source["index"], model_input(image[None], source))
        interpreter.invoke()
        for i, tensor in enumerate(tensors):
            values = interpreter.get_tensor(tensor)
            if values.dtype != np.float32:
                scale, zero_point = details[tensor]["quantization"]
                values = (values.astype(np.float32) - zero_point) * scale
            rows = values.reshape(-1, values.shape[-1])
            mean, positive = rows.mean(axis=0, dtype=np.float64), (rows > 0).mean(axis=0)
            means[i] = mean + (means[i] if number else 0.0)
            active[i] = positive + (active[i] if number else 0.0)
    return [m / len(images) for m in means], [a / len(images) for a in active]


def _matched_layers(fp32: Any, int8: Any) -> list[tuple[TfliteLayer, TfliteLayer]]:
    float_layers, int_layers = biased_layers(fp32), biased_layers(int8)

    def shapes(model: Any, layers: list[TfliteLayer]) -> list[list[int]]:
        return [model.subgraphs[0].tensors[layer.weight].shape.tolist() for layer in layers]

    if shapes(fp32, float_layers) != shapes(int8, int_layers):
        raise ValueError("the fp32 and int8 TFLite models have different layers: bias "
                         "correction needs the two files of one conversion")
    return list(zip(float_layers, int_layers, strict=True))


def _packed(model: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def mean_output_errors(fp32: bytes, int8: bytes, images: np.ndarray) -> list[np.ndarray]:
    """Each biased layer's per-channel output mean over `images`, int8 minus fp32 (after a
    fused ReLU), all layers measured in one pass."""
    pairs = _matched_layers(schema.ModelT.InitFromPackedBuf(fp32, 0),
                            schema.ModelT.InitFromPackedBuf(int8, 0))
    reference, _ = _output_statistics(fp32, [f.output for f, _ in pairs], images)
    measured, _ = _output_statistics(int8, [q.output for _, q in pairs], images)
    return [got - want for got, want in zip(measured, reference, strict=True)]


def correct_tflite_biases(fp32: bytes, int8: bytes, images: np.ndarray
                          ) -> tuple[bytes, list[BiasShift]]:
    """`int8` (a full-integer TFLite model) with its bias codes corrected against `fp32` on
    `images` (NHWC float calibration images through the model's preprocessing)."""
    if len(images) == 0:
        raise ValueError("bias correction needs at least one calibration image")
    model = schema.ModelT.InitFromPackedBuf(int8, 0)
    pairs = _matched_layers(schema.ModelT.InitFromPackedBuf(fp32, 0), model)
    references, active = _output_statistics(fp32, [f.output for f, _ in pairs], images)
    graph = model.subgraphs[0]
    shifts = []
    content = int8
    for (_, layer), reference, share in zip(pairs, references, active, strict=True):
        (measured,), _ = _output_statistics(content, [layer.output], images)
        error = measured - reference
        if layer.fused_relu:
            shift = np.where(share >= MIN_ACTIVE, error / np.maximum(share, MIN_ACTIVE), 0.0)
        else:
            shift = error
        bias = graph.tensors[layer.bias]
        buffer = model.buffers[bias.buffer]
        codes = np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype=np.int32)
        moved = moved_codes(codes, shift, np.asarray(bias.quantization.scale))
        buffer.data = np.frombuffer(moved.tobytes(), dtype=np.uint8)
        content = _packed(model)
        shifts.append(BiasShift(f"operator {layer.operator}", len(error),
                                float(np.abs(shift).mean()), float(np.abs(reference).mean())))
        logger.debug("TFLite bias correction, operator %d: mean |shift| %.4g", layer.operator,
                     shifts[-1].mean_abs_shift)
    return content, shifts
