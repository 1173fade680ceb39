"""`edgehemo doctor`: what this machine has for edgehemo, each line OK or missing with the fix."""

from __future__ import annotations

import ctypes.util
import importlib
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from edgehemo.errors import EdgehemoError
from edgehemo.manifest import verify_artifact
from edgehemo.models import list_artifacts


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


def _module_version(module: str) -> str | None:
    try:
        imported = importlib.import_module(module)
    except ImportError:
        return None
    return str(getattr(imported, "__version__", "installed"))


def run_checks(state_dir: Path, models_dir: Path | None = None) -> list[Check]:
    """All checks, in the order they are printed."""
    checks = [
        Check("python", sys.version_info >= (3, 11), platform.python_version(),
              "edgehemo needs Python 3.11 or newer", required=True),
        Check("numpy", True, _module_version("numpy") or "?"),
    ]
    cv2 = _module_version("cv2")
    checks.append(Check("opencv", cv2 is not None, cv2 or "missing",
                        "pip install 'edgehemo[device]'", required=True))
    ort = _module_version("onnxruntime")
    if ort:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        checks.append(Check("onnxruntime", True, f"{ort} ({providers})"))
    else:
        checks.append(Check("onnxruntime", False, "missing", "pip install 'edgehemo[onnx]'"))
    litert = _module_version("ai_edge_litert") or _module_version("tflite_runtime")
    checks.append(Check("litert", litert is not None, litert or "missing",
                        "pip install 'edgehemo[tflite]' (ai-edge-litert)"))
    edgetpu = ctypes.util.find_library("edgetpu")
    checks.append(Check("coral edge tpu runtime", edgetpu is not None, edgetpu or "missing",
                        "install libedgetpu1-std from Coral's apt repository (coral.ai)"))
    jetson = Path("/etc/nv_tegra_release")
    checks.append(Check("jetson", jetson.is_file(),
                        jetson.read_text().split(",")[0] if jetson.is_file() else "not a Jetson"))
    cameras = sorted(str(p) for p in Path("/dev").glob("video*"))
    checks.append(Check("usb cameras", bool(cameras), ", ".join(cameras) or "none found",
                        "plug in the USB microscope camera; check `ls /dev/video*`"))
    picamera = _module_version("picamera2")
    checks.append(Check("picamera2", picamera is not None, picamera or "missing",
                        "sudo apt install python3-picamera2, then a venv with "
                        "--system-site-packages"))
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    checks.append(Check("free disk", free > 1 << 30, f"{free / 1e9:.1f} GB at {existing}",
                        "free space: results stop being stored below the reserve"))
    writable = os.access(existing, os.W_OK)
    checks.append(Check("state directory", writable, str(state_dir),
                        f"make {state_dir} writable for the service user", required=True))
    for artifact in list_artifacts(models_dir):
        try:
            verify_artifact(artifact.path, artifact.manifest)
            checks.append(Check(f"model {artifact.name} ({artifact.manifest.format})", True,
                                "sha256 verified"))
        except EdgehemoError as error:
            checks.append(Check(f"model {artifact.name} ({artifact.manifest.format})", False,
                                str(error), "re-install or re-export the model", required=True))
    torch = "torch" in sys.modules
    checks.append(Check("torch not loaded", not torch, "the device path never needs torch"))
    return checks
