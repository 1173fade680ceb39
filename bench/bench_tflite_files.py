"""LiteRT invoke time of .tflite files, each timed in its own process, in alternating rounds.

    python bench/bench_tflite_files.py NEW.tflite OLD.tflite [...] [--runs 3]

An older artifact comes from git, e.g. CBAM-CNN's int8 file before the blocked spatial gates:
`git show 1ae5c33:edge/weights/cbam_cnn_int8.tflite > /tmp/before.tflite`. Each run times every
file once, in turn, in a fresh process (1 thread, batch 1, XNNPACK delegate as the tflite backend
runs it, a fixed random input) and prints the median microseconds of `invoke()` and each file's
time relative to the first. Separate processes because several interpreters of a large model
(HemoNet's 26 MB) in one process ran at different speeds by the order they were made, even for
copies of one file. Ratios are what to compare: the machine is noisy, so run it more than once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgehemo.device.backends.litert import load_interpreter_module
from edgehemo.export.benchmark import median_ms


def median_invoke_us(path: Path, repeats: int) -> float:
    """Median microseconds of one `invoke()` of `path`, after 10 untimed calls."""
    module, _ = load_interpreter_module()
    interpreter = module.Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        values = rng.integers(info.min, info.max, detail["shape"], dtype=detail["dtype"])
    else:
        values = rng.standard_normal(detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], values)
    return 1000 * median_ms(interpreter.invoke, warmup=10, repeats=repeats)


def timed_in_own_process(path: Path, repeats: int) -> float:
    result = subprocess.run([sys.executable, __file__, "--one", str(path), "--repeats",
                             str(repeats)], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help=".tflite files; the first is the base")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=500, help="timed calls per file per run")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(median_invoke_us(args.one, args.repeats))
        return
    if not args.files:
        parser.error("give at least one .tflite file")
    for path in args.files:
        if path.suffix != ".tflite" or not path.is_file():
            parser.error(f"{path}: not a .tflite file")
    for run in range(1, args.runs + 1):
        times = [timed_in_own_process(path, args.repeats) for path in args.files]
        cells = [f"{path} {us:.1f} us ({us / times[0]:.3f}x)"
                 for path, us in zip(args.files, times, strict=True)]
        print(f"run {run}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
