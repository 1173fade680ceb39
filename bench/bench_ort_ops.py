"""Where onnxruntime spends its time: per operator type, fp32 against int8, 1 thread, batch 1.

The int8/fp32 speed-up of a whole model is bounded by what is not a heavy convolution: every small
operator (the attention blocks' pools, 1x1 convolutions on 1x1 maps, sigmoids, transposes) costs
a few microseconds whatever its precision. This prints each model's profile side by side so that
the share of those operators is visible.

    python bench/bench_ort_ops.py cbam_cnn [--runs 300]
"""

from __future__ import annotations

import argparse
import collections
import json
import os

import numpy as np
import onnxruntime as ort

from edgehemo.models import resolve_artifact


def profile(path: str, size: int, runs: int) -> tuple[collections.Counter[str], float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    for _ in range(runs):
        session.run(None, {name: batch})
    trace = session.end_profiling()
    with open(trace) as handle:
        events = json.load(handle)
    os.remove(trace)
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values()) / runs / 1000
    return collections.Counter({k: v / runs / 1000 for k, v in per_op.items()}), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="shipped model name without suffix, e.g. cbam_cnn")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    for precision in ("fp32", "int8"):
        artifact = resolve_artifact(f"{args.model}_{precision}", formats=("onnx",))
        size = artifact.manifest.preprocessing.input_size
        per_op, total = profile(str(artifact.path), size, args.runs)
        print(f"\n{artifact.name}: {total:.3f} ms of operator time per image")
        print("| operator | ms | share |\n|---|---|---|")
        for op, ms in per_op.most_common():
            print(f"| {op} | {ms:.3f} | {100 * ms / total:.1f}% |")


if __name__ == "__main__":
    main()
