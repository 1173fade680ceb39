"""scripts/offline_bundle.py: the pieces that need no network (the bundle itself downloads
wheels; docs/station.md records a run of it, installed with pip's --no-index)."""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "offline_bundle.py"
spec = importlib.util.spec_from_file_location("offline_bundle", SCRIPT)
offline_bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(offline_bundle)


def test_the_platform_tags_cover_every_manylinux_level_up_to_the_devices_glibc():
    tags = offline_bundle.platform_tags("aarch64", "2.28")
    assert tags[0] == "manylinux2014_aarch64"
    assert tags[1:] == [f"manylinux_2_{minor}_aarch64" for minor in range(17, 29)]
    for bad in ("2.16", "236", "glibc"):
        with pytest.raises(ValueError, match="--glibc"):
            offline_bundle.platform_tags("aarch64", bad)


def test_the_install_script_refuses_another_python_before_touching_the_prefix(tmp_path):
    script = tmp_path / "install.sh"
    script.write_text(offline_bundle.install_script("0.1.0", "3.99", "device,tflite"))
    prefix = tmp_path / "prefix"
    result = subprocess.run(["sh", str(script), str(prefix)], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable})
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert result.returncode == 1
    assert f"this bundle is for Python 3.99, not {running}" in result.stderr
    assert not prefix.exists()


def test_the_install_script_installs_the_named_extras_from_its_own_wheels_only():
    text = offline_bundle.install_script("0.1.0", "3.11", "device,onnx")
    assert '--no-index --find-links "$here/wheels"' in text
    assert '"edgehemo[device,onnx]==0.1.0"' in text
    # the version the bundle pins is the one this checkout installs
    assert offline_bundle.project_version() == importlib.metadata.version("edgehemo")
