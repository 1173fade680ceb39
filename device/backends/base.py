"""The backend interface and its registry: subclasses register under their `key`."""

from __future__ import annotations

import difflib
import importlib
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgehemo.errors import EdgehemoError
from edgehemo.manifest import ArtifactManifest

logger = logging.getLogger(__name__)

# key -> module that defines it; modules are imported only when their backend is asked for,
# so a Pi without onnxruntime can still run the LiteRT backend and vice versa.
_MODULES = {
    "cpu": "edgehemo.device.backends.ort_cpu",
    "gpu": "edgehemo.device.backends.ort_gpu",
    "tflite": "edgehemo.device.backends.litert",
    "edgetpu": "edgehemo.device.backends.edgetpu",
}


class BackendError(EdgehemoError):
    """A backend cannot run here: missing runtime, library or device. The message says the fix."""


class BackendSettings(BaseModel):
    """Settings every backend accepts; backends extend it."""

    model_config = ConfigDict(extra="forbid")

    threads: int = 0


class Backend(ABC):
    """Runs one exported model: float32 NCHW batch in, float32 logits (N, classes) out."""

    key: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    settings_class: ClassVar[type[BackendSettings]] = BackendSettings

    def __init__(self, artifact: Path, manifest: ArtifactManifest,
                 settings: BackendSettings) -> None:
        self.artifact = artifact
        self.manifest = manifest
        self.settings = settings

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a preprocessed float32 batch (N, 3, S, S)."""

    @abstractmethod
    def input_shape(self) -> list[int | str]:
        """The model's real input shape, as the runtime reports it."""

    @abstractmethod
    def runtime_version(self) -> str:
        """Runtime name and version, for manifests and `doctor`."""


def backend_keys() -> list[str]:
    return sorted(_MODULES)


def backend_class(key: str) -> type[Backend]:
    """The backend class for `key`; imports its module on first use."""
    if key not in _MODULES:
        close = difflib.get_close_matches(key, _MODULES, n=2, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise BackendError(f"unknown backend {key!r}.{hint} Known: {', '.join(backend_keys())}")
    module = importlib.import_module(_MODULES[key])
    return module.BACKEND
