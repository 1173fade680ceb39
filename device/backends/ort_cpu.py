"""`cpu`: onnxruntime on the CPU (fp32 and int8 QDQ ONNX models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from edgehemo.device.backends.base import Backend, BackendError, BackendSettings
from edgehemo.manifest import ArtifactManifest


class CpuSettings(BackendSettings):
    threads: int = Field(0, ge=0, description="Intra-op threads; 0 lets onnxruntime choose.")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendError(
            "the cpu backend needs onnxruntime: pip install 'edgehemo[onnx]' "
            "(or use --backend tflite with ai-edge-litert)"
        ) from error
    return onnxruntime


def optimizers_to_disable(precision: str) -> list[str]:
    """Graph optimisers to turn off for a model of this precision.

    An int8 graph's only float convolutions are CBAM's spatial gates (2 -> 1 channels,
    edgehemo.export.quantize.float_islands); onnxruntime's NCHWc layout, blocked channels made
    for wide float convolutions, costs them more in reorders than it saves: int8 CBAM-CNN and
    HemoNet-GAP ran ~4 % faster without it (bench/bench_onnx_int8.py), and an int8 model with
    no float convolution runs the same.
    """
    return ["NchwcTransformer"] if precision == "int8" else []


class OnnxRuntimeCpu(Backend):
    key = "cpu"
    formats = ("onnx",)
    settings_class = CpuSettings

    def __init__(self, artifact: Path, manifest: ArtifactManifest,
                 settings: BackendSettings) -> None:
        super().__init__(artifact, manifest, settings)
        ort = _onnxruntime()
        options = ort.SessionOptions()
        if settings.threads:
            options.intra_op_num_threads = settings.threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(artifact), sess_options=options, providers=self._provider_list(),
                disabled_optimizers=optimizers_to_disable(manifest.precision),
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise BackendError(f"{artifact}: onnxruntime cannot load it ({error})") from error
        self._input = self.session.get_inputs()[0]
        self._version = ort.__version__

    def _provider_list(self) -> list[object]:
        return ["CPUExecutionProvider"]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input.name: batch})[0]

    def input_shape(self) -> list[int | str]:
        return [d if isinstance(d, int) else str(d) for d in self._input.shape]

    def runtime_version(self) -> str:
        return f"onnxruntime {self._version}"


BACKEND = OnnxRuntimeCpu
