"""LiteRT invoke time of .tflite files, timed in alternating rounds (1 thread, batch 1).

    python bench/bench_tflite_files.py NEW.tflite OLD.tflite [...] [--runs 3]

An older artifact comes from git, e.g. CBAM-CNN's int8 file before the blocked spatial gates:
`git show 1ae5c33:edge/weights/cbam_cnn_int8.tflite > /tmp/before.tflite`. Prints, per run, the
median microseconds of `invoke()` on a fixed random input (XNNPACK delegate, as the tflite
backend runs it) and each file's time relative to the first. Ratios are what to compare: the
machine is noisy, so run it more than once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from edgehemo.device.backends.litert import load_interpreter_module
from edgehemo.export.benchmark import interleaved_median_ms


def invoker(path: Path, module: ModuleType) -> Callable[[], object]:
    """A ready interpreter's `invoke`, its input filled with fixed random values."""
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
    return interpreter.invoke


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help=".tflite files; the first is the base")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1000, help="timed calls per file per run")
    args = parser.parse_args()
    for path in args.files:
        if path.suffix != ".tflite" or not path.is_file():
            parser.error(f"{path}: not a .tflite file")
    module, _ = load_interpreter_module()
    calls = [invoker(path, module) for path in args.files]
    for run in range(1, args.runs + 1):
        times = interleaved_median_ms(calls, repeats=args.repeats, rounds=20)
        cells = [f"{path} {1000 * ms:.1f} us ({ms / times[0]:.3f}x)"
                 for path, ms in zip(args.files, times, strict=True)]
        print(f"run {run}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
