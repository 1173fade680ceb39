"""`edgetpu`: a Coral Edge TPU through LiteRT and the `libedgetpu.so.1` delegate.

Runs only models compiled by `edgetpu_compiler` (`<model>_int8_edgetpu.tflite`). When the
library or the device is missing, loading fails with what is missing and how to install it;
it never falls back to the CPU silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field, field_validator

from edgehemo.device.backends.base import BackendError, BackendSettings
from edgehemo.device.backends.litert import LiteRT
from edgehemo.manifest import ArtifactManifest

EDGETPU_LIBRARY = "libedgetpu.so.1"


class EdgeTpuSettings(BackendSettings):
    device: str = Field("usb", description="Which Edge TPU: usb, usb:N, pci or pci:N.")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"(usb|pci)(:\d+)?", value):
            raise ValueError(f"device must be usb, usb:N, pci or pci:N, got {value!r}")
        return value


class EdgeTpu(LiteRT):
    key = "edgetpu"
    formats = ("tflite",)
    settings_class = EdgeTpuSettings

    def __init__(self, artifact: Path, manifest: ArtifactManifest,
                 settings: BackendSettings) -> None:
        if not artifact.name.endswith("_edgetpu.tflite"):
            raise BackendError(
                f"{artifact.name} is not compiled for the Edge TPU: run `edgetpu_compiler "
                f"{artifact.name}` on an x86-64 Linux machine and use the "
                "<model>_int8_edgetpu.tflite it writes (see docs/export.md)"
            )
        super().__init__(artifact, manifest, settings)

    def _make_interpreter(self, module: ModuleType, settings: BackendSettings) -> Any:
        assert isinstance(settings, EdgeTpuSettings)
        try:
            delegate = module.load_delegate(EDGETPU_LIBRARY, {"device": settings.device})
        except (ValueError, OSError, RuntimeError) as error:
            raise BackendError(
                f"cannot open the Edge TPU ({settings.device}) through {EDGETPU_LIBRARY}: "
                f"{error}. Install the runtime (apt install libedgetpu1-std from Coral's "
                "repository), plug the Coral in (check `lsusb` for 'Global Unichip' or "
                "'Google'), or choose --backend tflite / cpu to run on the CPU."
            ) from error
        return module.Interpreter(model_path=str(self.artifact),
                                  experimental_delegates=[delegate],
                                  num_threads=settings.threads or None)


BACKEND = EdgeTpu
