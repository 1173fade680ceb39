"""`tflite`: LiteRT (`ai_edge_litert`), falling back to `tflite_runtime` on older systems.

Float and full-integer models. An int8 model's input is quantised here with the scale and zero
point the model declares, and its output dequantised, so callers always pass float32 NCHW and get
float32 logits. Models converted from ONNX are NHWC: the batch is transposed to the model's
layout. XNNPACK is LiteRT's default CPU delegate and stays on.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgehemo.device.backends.base import Backend, BackendError, BackendSettings
from edgehemo.manifest import ArtifactManifest

logger = logging.getLogger(__name__)


def load_interpreter_module() -> tuple[ModuleType, str]:
    """The LiteRT interpreter module and its name; BackendError says how to install one."""
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter

        return interpreter, "tflite-runtime"
    except ImportError as error:
        missing = BackendError(
            "the tflite backend needs LiteRT: pip install 'edgehemo[tflite]' (ai-edge-litert), "
            "or tflite-runtime on older systems; the cpu backend (onnxruntime) is an alternative"
        )
        raise missing from error
    except (AttributeError, RuntimeError) as error:  # built against numpy 1.x
        import numpy

        raise BackendError(
            f"tflite-runtime cannot load with numpy {numpy.__version__} (it was built for "
            "numpy<2): install ai-edge-litert instead, or pip install 'numpy<2'"
        ) from error


class LiteRT(Backend):
    key = "tflite"
    formats = ("tflite",)
    settings_class = BackendSettings

    def __init__(self, artifact: Path, manifest: ArtifactManifest,
                 settings: BackendSettings) -> None:
        super().__init__(artifact, manifest, settings)
        module, self._runtime = load_interpreter_module()
        self._version = getattr(module, "__version__", "") or _package_version(self._runtime)
        self.interpreter = self._make_interpreter(module, settings)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._nhwc = manifest.input.layout == "NHWC"

    def _make_interpreter(self, module: ModuleType, settings: BackendSettings) -> Any:
        try:
            return module.Interpreter(model_path=str(self.artifact),
                                      num_threads=settings.threads or None)
        except (ValueError, RuntimeError) as error:
            raise BackendError(f"{self.artifact}: LiteRT cannot load it ({error})") from error

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        """`batch` (float NCHW) as the model's contiguous input, in the model's layout."""
        if self._nhwc:
            return nhwc_model_input(batch, self._input)
        return model_input(batch, self._input)

    def _dequantize(self, values: np.ndarray) -> np.ndarray:
        if values.dtype == np.float32:
            return values
        scale, zero_point = self._output["quantization"]
        return (values.astype(np.float32) - zero_point) * scale

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = self._quantize(batch)
        model_batch = int(self._input["shape"][0])
        if model_batch == len(batch):
            return self._invoke(batch)
        # Exported models have a static batch of 1 (the Edge TPU requires static shapes).
        return np.concatenate([self._invoke(batch[i : i + 1]) for i in range(len(batch))])

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        return self._dequantize(self.interpreter.get_tensor(self._output["index"]).copy())

    def input_shape(self) -> list[int | str]:
        return [int(d) for d in self._input["shape"]]

    def runtime_version(self) -> str:
        return f"{self._runtime} {self._version}".strip()


def model_input(batch: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """`batch` (float, any strides) as the contiguous input that the interpreter's input
    `detail` (from `get_input_details()`) takes: quantised where it is an integer tensor."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return np.ascontiguousarray(batch)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    # round(batch / scale + zero_point), clipped, in place in one contiguous buffer: the
    # layout change happens in the first pass
    values = np.empty(batch.shape, np.float32)
    np.divide(batch, scale, out=values)
    values += zero_point
    np.rint(values, out=values)
    np.clip(values, info.min, info.max, out=values)
    return values.astype(dtype)


def nhwc_model_input(batch: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """`batch` (float NCHW) as the contiguous NHWC input that the interpreter's input `detail`
    takes; `model_input` of the transposed batch, up to one step where value / scale lies
    within float rounding of a half.

    With OpenCV, an 8-bit input is quantised on the channel planes as they lie and then
    interleaved, a third of numpy's time on the transposed view (bench/bench_litert_input.py).
    """
    dtype = detail["dtype"]
    cv2_type = _CV2_TYPES.get(np.dtype(dtype))
    cv2 = _opencv()
    if cv2 is None or cv2_type is None or batch.ndim != 4:
        return model_input(batch.transpose(0, 2, 3, 1), detail)
    scale, zero_point = detail["quantization"]
    channels, height, width = batch.shape[1:]
    images = []
    for image in batch:
        planes = np.ascontiguousarray(image, np.float32).reshape(channels * height, width)
        # saturate_cast(value / scale + zero_point), rounded to nearest even
        quantised = cv2.addWeighted(planes, 1 / scale, planes, 0.0, float(zero_point),
                                    dtype=cv2_type).reshape(channels, height, width)
        images.append(cv2.merge(list(quantised)).reshape(height, width, channels))
    return images[0][None] if len(images) == 1 else np.stack(images)


@functools.cache
def _opencv() -> ModuleType | None:
    try:
        import cv2
    except ImportError:  # the tflite extra alone: numpy does it, slower
        return None
    return cv2


_CV2_TYPES = {np.dtype(np.int8): 1, np.dtype(np.uint8): 0}  # cv2.CV_8S, cv2.CV_8U


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


BACKEND = LiteRT
