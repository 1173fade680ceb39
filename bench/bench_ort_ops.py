"""Where onnxruntime spends its time: per operator type, fp32 against int8, 1 thread, batch 1.

The int8/fp32 speed-up of a whole model is bounded by what is not a heavy convolution: every small
operator (the attention blocks' pools, 1x1 convolutions on 1x1 maps, sigmoids, transposes) costs
a few microseconds whatever its precision. This prints each model's profile side by side so that
the share of those operators is visible.

    python bench/bench_ort_ops.py cbam_cnn [--runs 300] [--nodes] [--before OLD_int8.onnx]

`--nodes` lists each node (e.g. the first convolution) instead of totals per operator type;
`--before` adds an older int8 file to the comparison (from git, e.g.
`git show fa890c1:edge/weights/cbam_cnn_int8.onnx > /tmp/before.onnx`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os

import numpy as np
import onnxruntime as ort

from edgehemo.device.backends.ort_cpu import optimizers_to_disable
from edgehemo.models import resolve_artifact


def profile(path: str, size: int, runs: int, *, precision: str,
            by_node: bool = False) -> tuple[collections.Counter[str], float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=optimizers_to_disable(precision))
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
            op = event["args"]["op_name"]
            key = f"{op} {event['name'].removesuffix('_kernel_time')}" if by_node else op
            per_op[key] += event["dur"]
    total = sum(per_op.values()) / runs / 1000
    return collections.Counter({k: v / runs / 1000 for k, v in per_op.items()}), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="shipped model name without suffix, e.g. cbam_cnn")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--nodes", action="store_true", help="one row per node, not per type")
    parser.add_argument("--before", help="an older int8 .onnx of the same model to profile too")
    args = parser.parse_args()
    files: list[tuple[str, str, int, str]] = []
    for precision in ("fp32", "int8"):
        artifact = resolve_artifact(f"{args.model}_{precision}", formats=("onnx",))
        size = artifact.manifest.preprocessing.input_size
        files.append((artifact.name, str(artifact.path), size, precision))
    if args.before:
        files.append((f"{args.model}_int8 before", args.before, files[0][2], "int8"))
    for label, path, size, precision in files:
        per_op, total = profile(path, size, args.runs, precision=precision, by_node=args.nodes)
        print(f"\n{label}: {total:.3f} ms of operator time per image")
        print("| operator | ms | share |\n|---|---|---|")
        for op, ms in per_op.most_common():
            print(f"| {op} | {ms:.3f} | {100 * ms / total:.1f}% |")


if __name__ == "__main__":
    main()
