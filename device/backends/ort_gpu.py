"""`gpu`: onnxruntime with the TensorRT, then CUDA, execution providers (Jetson, NVIDIA GPUs).

TensorRT builds an engine for the model on first load, which can take minutes on a Jetson; the
engine is cached in `engine_cache` so later starts are fast. There is no silent fallback to the
CPU: if neither GPU provider is available, loading fails and says how to fix it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field

from edgehemo.device.backends.base import BackendError, BackendSettings
from edgehemo.device.backends.ort_cpu import OnnxRuntimeCpu, _onnxruntime
from edgehemo.manifest import ArtifactManifest

logger = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class GpuSettings(BackendSettings):
    device_id: int = Field(0, ge=0, description="CUDA device index.")
    engine_cache: Path = Field(
        Path("/var/lib/edgehemo/trt-cache"), description="Where TensorRT engines are cached."
    )
    fp16: bool = Field(True, description="Let TensorRT use fp16 kernels (fp32 models).")


class OnnxRuntimeGpu(OnnxRuntimeCpu):
    key = "gpu"
    formats = ("onnx",)
    settings_class = GpuSettings

    def __init__(self, artifact: Path, manifest: ArtifactManifest,
                 settings: BackendSettings) -> None:
        assert isinstance(settings, GpuSettings)
        ort = _onnxruntime()
        available = ort.get_available_providers()
        chosen = [p for p in GPU_PROVIDERS if p in available]
        if not chosen:
            raise BackendError(
                "the gpu backend needs onnxruntime built with TensorRT or CUDA; this onnxruntime "
                f"{ort.__version__} offers only {', '.join(available)}. On a Jetson install "
                "NVIDIA's onnxruntime-gpu wheel for your JetPack; elsewhere "
                "`pip install onnxruntime-gpu`. The cpu backend runs without a GPU."
            )
        options: list[tuple[str, dict[str, object]]] = []
        if "TensorrtExecutionProvider" in chosen:
            try:
                settings.engine_cache.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise BackendError(
                    f"cannot create the TensorRT engine cache {settings.engine_cache} ({error}); "
                    "set engine_cache to a writable directory"
                ) from error
            options.append(("TensorrtExecutionProvider", {
                "device_id": settings.device_id,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(settings.engine_cache),
                "trt_fp16_enable": settings.fp16 and manifest.precision == "fp32",
                "trt_int8_enable": manifest.precision == "int8",
            }))
        if "CUDAExecutionProvider" in chosen:
            options.append(("CUDAExecutionProvider", {"device_id": settings.device_id}))
        self._providers = options
        super().__init__(artifact, manifest, settings)

    def _provider_list(self) -> list[object]:
        return list(self._providers)


BACKEND = OnnxRuntimeGpu
