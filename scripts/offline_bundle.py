"""One folder that installs edgehemo on a device with no internet: its wheel, every dependency's
wheel for the device's processor and Python, and an install script.

Run it on any machine with internet, copy the folder to the device (a USB stick), run the
script there:

    python scripts/offline_bundle.py --out bundle --arch aarch64 --python 3.11 \\
        --extras device,tflite          # Raspberry Pi 4/5 on 64-bit Raspberry Pi OS (bookworm)
    sh bundle/install.sh /opt/edgehemo  # on the device, offline: a venv there, edgehemo in it

Wheels only: the device compiles nothing. `--arch` is the device's processor (`uname -m`:
aarch64 for a Raspberry Pi 4/5 or a Jetson on a 64-bit OS, x86_64 for a PC), `--python` its
Python (`python3 --version`), `--glibc` its C library (`ldd --version`; a wheel built for a newer
one would not install). `SYSTEM_SITE=1 sh install.sh` makes the venv see the system's packages,
as picamera2 (an apt package) needs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLDEST_GLIBC_MINOR = 17  # manylinux2014

INSTALL_SCRIPT = """#!/bin/sh
# Install edgehemo {version} from this folder's wheels, without internet.
#   sh install.sh [PREFIX]    (default /opt/edgehemo; SYSTEM_SITE=1 for picamera2)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${{1:-/opt/edgehemo}}
python=${{PYTHON:-python3}}
"$python" -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == {python_tuple} else \
"this bundle is for Python {python}, not %d.%d: make one with --python %d.%d" % (v + v))'
if [ "${{SYSTEM_SITE:-0}}" = 1 ]; then
  "$python" -m venv --system-site-packages "$prefix"
else
  "$python" -m venv "$prefix"
fi
"$prefix/bin/python" -m pip install --no-index --find-links "$here/wheels" \
  "edgehemo[{extras}]=={version}"
echo "installed: $prefix/bin/edgehemo (check the machine with: $prefix/bin/edgehemo doctor)"
"""


def platform_tags(arch: str, glibc: str) -> list[str]:
    """pip's `--platform` tags a device with this processor and C library installs: every
    manylinux level from manylinux2014 (glibc 2.17) up to its own (pip matches tags exactly)."""
    match = re.fullmatch(r"2\.(\d+)", glibc)
    if match is None or int(match.group(1)) < OLDEST_GLIBC_MINOR:
        raise ValueError(f"--glibc {glibc!r}: expected a version such as 2.36 (2.17 or newer)")
    newest = int(match.group(1))
    return [f"manylinux2014_{arch}"] + [f"manylinux_2_{minor}_{arch}"
                                        for minor in range(OLDEST_GLIBC_MINOR, newest + 1)]


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.M)
    if match is None:
        raise ValueError("pyproject.toml names no version")
    return match.group(1)


def install_script(version: str, python: str, extras: str) -> str:
    major, minor = python.split(".")
    return INSTALL_SCRIPT.format(version=version, python=python, extras=extras,
                                 python_tuple=f"({int(major)}, {int(minor)})")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", choices=("aarch64", "x86_64"), default="aarch64")
    parser.add_argument("--python", default="3.11", help="the device's Python, e.g. 3.11")
    parser.add_argument("--glibc", default="2.35", help="the device's glibc, e.g. 2.36")
    parser.add_argument("--extras", default="device,tflite",
                        help="what the device runs: device,tflite or device,onnx (or both)")
    args = parser.parse_args()
    if not re.fullmatch(r"3\.\d+", args.python):
        parser.error(f"--python {args.python!r}: expected a version such as 3.11")
    version = project_version()
    wheels = args.out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(ROOT))
    own = wheels / f"edgehemo-{version}-py3-none-any.whl"
    platform = [option for tag in platform_tags(args.arch, args.glibc)
                for option in ("--platform", tag)]
    pip("download", "--only-binary=:all:", *platform, "--python-version", args.python,
        "--dest", str(wheels), f"edgehemo[{args.extras}] @ {own.resolve().as_uri()}")
    script = args.out / "install.sh"
    script.write_text(install_script(version, args.python, args.extras))
    script.chmod(0o755)
    size = sum(f.stat().st_size for f in wheels.iterdir()) / 1e6
    print(f"{args.out}: {len(list(wheels.iterdir()))} wheels, {size:.0f} MB, for "
          f"{args.arch} / Python {args.python} / glibc {args.glibc}; on the device: "
          f"sh {script.name} [PREFIX]")


if __name__ == "__main__":
    main()
