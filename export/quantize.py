"""ONNX fp32 -> int8 by static QDQ quantisation, calibrated on real training images."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.quantization import registry as quantizer_registry

from edgehemo.datasets import ImageSet
from edgehemo.errors import DatasetError
from edgehemo.export.bias_correction import BiasShift, correct_biases
from edgehemo.preprocess import PreprocessSpec, normalize
from edgehemo.store.atomic import write_atomically

logger = logging.getLogger(__name__)

MIN_CALIBRATION_IMAGES = 16


def calibration_indices(data: ImageSet, count: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-stratified, seeded sample of `count` images (all if fewer)."""
    if len(data) < MIN_CALIBRATION_IMAGES:
        raise DatasetError(
            f"{data.source}: {len(data)} calibration images; at least "
            f"{MIN_CALIBRATION_IMAGES} are needed for a trustworthy int8 range"
        )
    if count >= len(data):
        return np.arange(len(data))
    rng = np.random.default_rng(seed)
    per_class = max(1, count // len(data.classes))
    chosen: list[int] = []
    for label in range(len(data.classes)):
        members = np.flatnonzero(data.labels == label)
        chosen.extend(rng.permutation(members)[:per_class].tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def calibration_subset(data: ImageSet, count: int, *, seed: int = 0) -> ImageSet:
    """A class-stratified, seeded sample of `count` images (all of them if fewer)."""
    if count >= len(data) >= MIN_CALIBRATION_IMAGES:
        return data
    return data.subset(calibration_indices(data, count, seed=seed))


class _Batches(CalibrationDataReader):
    def __init__(self, data: ImageSet, spec: PreprocessSpec, input_name: str,
                 batch_size: int = 32) -> None:
        self._batches = iter(
            normalize(data.images[i : i + batch_size], spec)
            for i in range(0, len(data), batch_size)
        )
        self._input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def float_islands(model: onnx.ModelProto) -> list[str]:
    """Nodes left in float: each spatial-attention gate (a k x k convolution from 2 channels to
    1, and the sigmoid after it).

    onnxruntime's int8 convolution is slow for so few channels: in the int8 CBAM-CNN it cost
    ~2x its float time, more than the quantise/dequantise pair around a float one
    (bench/bench_ort_ops.py). The gate's inputs and output are small single-map tensors.
    """
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    chosen: list[str] = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        shape = weights.get(node.input[1])
        if shape is None or len(shape) != 4 or shape[:2] != (1, 2):
            continue
        chosen.append(node.name)
        chosen.extend(n.name for n in consumers.get(node.output[0], []) if n.op_type == "Sigmoid")
    return chosen


@contextmanager
def _max_reductions_keep_scale() -> Iterator[None]:
    """Quantise ReduceMax as onnxruntime's quantiser quantises MaxPool and Reshape: its output
    takes its input's scale and zero point (a maximum of uint8 codes is the code of the
    maximum), so the runtime runs it on the uint8 tensor instead of in float between a
    dequantise and a quantise. The quantiser's table has no entry for it; the entry is added
    for one call and removed after."""
    table = quantizer_registry.QDQRegistry
    had = "ReduceMax" in table
    previous = table.get("ReduceMax")
    table["ReduceMax"] = table["Reshape"]
    try:
        yield
    finally:
        if had:
            table["ReduceMax"] = previous
        else:
            del table["ReduceMax"]


KEEP_FLOAT = ("head", "stem")


def kept_in_float(model: onnx.ModelProto, keep: tuple[str, ...] = ()) -> list[str]:
    """The spatial gates (`float_islands`), plus what `keep` names: "head" the last Gemm (the
    logits layer), "stem" the first convolution, "node:NAME" the node of that name."""
    named = [k.removeprefix("node:") for k in keep if k.startswith("node:")]
    kinds = [k for k in keep if not k.startswith("node:")]
    unknown = sorted(set(kinds) - set(KEEP_FLOAT))
    if unknown:
        raise ValueError(f"cannot keep {', '.join(unknown)} in float; expected "
                         f"{', '.join(KEEP_FLOAT)} or node:NAME")
    missing = sorted(set(named) - {node.name for node in model.graph.node})
    if missing:
        raise ValueError(f"cannot keep {', '.join(missing)} in float: no such node")
    chosen = float_islands(model)
    if "head" in kinds:
        chosen += [n.name for n in model.graph.node if n.op_type == "Gemm"][-1:]
    if "stem" in kinds:
        chosen += [n.name for n in model.graph.node if n.op_type == "Conv"][:1]
    return chosen + [name for name in named if name not in chosen]


def quantize_onnx(
    fp32_path: Path,
    int8_path: Path,
    calibration: ImageSet,
    spec: PreprocessSpec,
    *,
    input_name: str = "input",
    method: str = "minmax",
    keep_float: tuple[str, ...] = (),
    bias_correction: bool = True,
) -> list[BiasShift]:
    """Static QDQ quantisation (per-channel int8 weights, uint8 activations, the spatial gates
    and what `keep_float` names in float), then, unless `bias_correction` is False, each
    quantised layer's bias corrected on the calibration images (`bias_correction.py`); atomic
    write. Returns the corrections made."""
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}; expected {', '.join(methods)}")
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        quantized = Path(workdir) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        left_in_float = kept_in_float(onnx.load(str(prepared)), keep_float)
        with _max_reductions_keep_scale():
            quantize_static(
                str(prepared),
                str(quantized),
                _Batches(calibration, spec, input_name),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                nodes_to_exclude=left_in_float,
            )
        shifts: list[BiasShift] = []
        if bias_correction:
            int8 = onnx.load(str(quantized))
            batches = [normalize(calibration.images[i : i + 16], spec)
                       for i in range(0, len(calibration), 16)]
            shifts = correct_biases(onnx.load(str(prepared)), int8, batches,
                                    input_name=input_name)
            onnx.save(int8, str(quantized))
        write_atomically(int8_path, quantized.read_bytes())
    return shifts
