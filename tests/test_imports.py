"""The device path must never import torch, onnx or TensorFlow (ARCHITECTURE.md)."""

import subprocess
import sys

FORBIDDEN = ("torch", "onnx", "tensorflow")


def test_core_and_cli_do_not_import_heavy_frameworks():
    code = (
        "import sys, edgehemo, edgehemo.cli, edgehemo.models, edgehemo.datasets, "
        "edgehemo.metrics, edgehemo.cards, edgehemo.preprocess, edgehemo.store, edgehemo.device\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""
