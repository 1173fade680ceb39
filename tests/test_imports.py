"""The device path must never import torch, onnx or TensorFlow (ARCHITECTURE.md)."""

import subprocess
import sys

FORBIDDEN = ("torch", "onnx", "tensorflow")


def test_core_and_cli_do_not_import_heavy_frameworks():
    code = (
        "import sys, edgehemo, edgehemo.cli, edgehemo.models, edgehemo.datasets, "
        "edgehemo.metrics, edgehemo.cards, edgehemo.preprocess, edgehemo.store, edgehemo.device, "
        "edgehemo.device.daemon, edgehemo.device.review, edgehemo.device.service, "
        "edgehemo.device.live, edgehemo.report, edgehemo.results, edgehemo.ood, "
        "edgehemo.cli_capture\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_a_whole_capture_session_never_imports_torch(tmp_path, clip_path):
    code = (
        "import sys\n"
        "from edgehemo.cli import main\n"
        f"sys.argv = ['edgehemo', 'capture', '--source', {str(clip_path)!r}, '--state-dir', "
        f"{str(tmp_path)!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', ','.join(m for m in {FORBIDDEN!r} if m in sys.modules), "
        "file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"cells"' in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "LOADED"
