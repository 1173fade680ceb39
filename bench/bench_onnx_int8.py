"""ONNX int8 against ONNX fp32 (and optionally an older int8 file), timed in alternating rounds.

    python bench/bench_onnx_int8.py cbam_cnn [--before OLD_int8.onnx] [--runs 3]

An older artifact comes from git, e.g. the int8 file before the onnxruntime-tuned graph:
`git show fa890c1:edge/weights/cbam_cnn_int8.onnx > /tmp/before.onnx`. 1 thread; ms per image
at batch 1 and 16; speed-up over fp32 in brackets. Ratios are what to compare: the machine is
noisy, so run it more than once.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort

from edgehemo.device.backends.ort_cpu import optimizers_to_disable
from edgehemo.export.benchmark import interleaved_median_ms
from edgehemo.models import resolve_artifact


def session(path: str, precision: str) -> ort.InferenceSession:
    """A session as the cpu backend makes it, at 1 thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=optimizers_to_disable(precision))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="shipped model name without suffix, e.g. cbam_cnn")
    parser.add_argument("--before", help="an older int8 .onnx of the same model")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    fp32 = resolve_artifact(f"{args.model}_fp32", formats=("onnx",))
    int8 = resolve_artifact(f"{args.model}_int8", formats=("onnx",))
    paths = {"fp32": str(fp32.path), "int8": str(int8.path)}
    if args.before:
        paths["int8 before"] = args.before
    sessions = {label: session(path, label.split()[0]) for label, path in paths.items()}
    size = fp32.manifest.preprocessing.input_size
    rng = np.random.default_rng(0)
    for run in range(1, args.runs + 1):
        for batch_size in (1, 16):
            batch = rng.standard_normal((batch_size, 3, size, size)).astype(np.float32)
            timings = interleaved_median_ms(
                [lambda s=s, b=batch: s.run(None, {"input": b}) for s in sessions.values()],
                repeats=max(20, 400 // batch_size))
            cells = [f"{label} {ms / batch_size:.3f} ms ({timings[0] / ms:.2f}x)"
                     for label, ms in zip(sessions, timings, strict=True)]
            print(f"run {run}, batch {batch_size}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
