"""ONNX fp32 -> int8 by static QDQ quantisation, calibrated on real training images."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from edgehemo.datasets import ImageSet
from edgehemo.errors import DatasetError
from edgehemo.preprocess import PreprocessSpec, normalize
from edgehemo.store.atomic import write_atomically

logger = logging.getLogger(__name__)

MIN_CALIBRATION_IMAGES = 16


def calibration_subset(data: ImageSet, count: int, *, seed: int = 0) -> ImageSet:
    """A class-stratified, seeded sample of `count` images (all of them if fewer)."""
    if len(data) < MIN_CALIBRATION_IMAGES:
        raise DatasetError(
            f"{data.source}: {len(data)} calibration images; at least "
            f"{MIN_CALIBRATION_IMAGES} are needed for a trustworthy int8 range"
        )
    if count >= len(data):
        return data
    rng = np.random.default_rng(seed)
    per_class = max(1, count // len(data.classes))
    chosen: list[int] = []
    for label in range(len(data.classes)):
        members = np.flatnonzero(data.labels == label)
        chosen.extend(rng.permutation(members)[:per_class].tolist())
    return data.subset(np.sort(np.asarray(chosen)))


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


def quantize_onnx(
    fp32_path: Path,
    int8_path: Path,
    calibration: ImageSet,
    spec: PreprocessSpec,
    *,
    input_name: str = "input",
    method: str = "minmax",
) -> None:
    """Static QDQ quantisation (per-channel int8 weights, uint8 activations); atomic write."""
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}; expected {', '.join(methods)}")
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        quantized = Path(workdir) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            _Batches(calibration, spec, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
        )
        write_atomically(int8_path, quantized.read_bytes())
