"""Footprint of the device path: process start to first classification, and peak memory.

    python bench/bench_startup.py --model cbam_cnn_int8 --backend cpu --runs 7

Runs `edgehemo classify ONE_IMAGE` as a fresh process several times and reports the median wall
time and the largest peak RSS (ru_maxrss of the child), and whether torch was imported (it must
not be). Run it on an idle machine; the figure includes Python's own start-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = """
import sys
from edgehemo.cli import main
sys.argv = ["edgehemo", "classify", {image!r}, "--model", {model!r}, "--backend", {backend!r},
            "--json"]
try:
    main()
finally:
    print("TORCH_LOADED", "torch" in sys.modules, file=sys.stderr)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cbam_cnn_int8")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--image", type=Path,
                        default=next((REPO / "edge/samples/pbc/neutrophil").glob("*.jpg")))
    args = parser.parse_args()
    code = CODE.format(image=str(args.image), model=args.model, backend=args.backend)
    times, torch_loaded = [], False
    for _ in range(args.runs):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True)
        times.append(time.perf_counter() - start)
        torch_loaded |= "TORCH_LOADED True" in result.stderr
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report = {
        "model": args.model, "backend": args.backend, "runs": args.runs,
        "start_to_first_result_s_median": round(statistics.median(times), 3),
        "start_to_first_result_s_min": round(min(times), 3),
        "peak_rss_mb": round(peak_mb, 1), "torch_imported": torch_loaded,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
