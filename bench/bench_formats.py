"""Latency of one model in every format, measured in one run so the ratios are comparable.

    python bench/bench_formats.py --checkpoint edge/weights/cbam_cnn.pt \
        --onnx edge/weights/cbam_cnn_fp32.onnx edge/weights/cbam_cnn_int8.onnx --threads 1 2

Prints median ms per batch and per image, images/s and the speed-up over torch eager, for batch 1
and the batch sizes the capture daemon uses. Warm-up runs are discarded. Writes JSON with
--json. This machine is noisy: compare ratios within one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _median_ms(fn: Callable[[], object], *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, nargs="*", default=[])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from edgehemo.device.classifier import Classifier
    from edgehemo.models import resolve_weights
    from edgehemo.train.evaluate import load_model

    weights = resolve_weights(args.checkpoint)
    model = load_model(weights.checkpoint, weights.card)
    size = weights.card.input_size
    rng = np.random.default_rng(0)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        runners: dict[str, Callable[[np.ndarray], object]] = {}

        def torch_run(batch: np.ndarray) -> object:
            with torch.inference_mode():
                return model(torch.from_numpy(batch))

        runners["torch eager"] = torch_run
        for path in args.onnx:
            classifier = Classifier.load(path, settings={"threads": threads})
            runners[path.stem] = classifier.backend.run
        for batch_size in args.batches:
            batch = rng.standard_normal((batch_size, 3, size, size)).astype(np.float32)
            repeats = max(20, args.repeats // batch_size)
            baseline = None
            for name, run in runners.items():
                ms = _median_ms(lambda r=run, b=batch: r(b), warmup=10, repeats=repeats)
                baseline = baseline or ms
                rows.append({
                    "format": name, "threads": threads, "batch": batch_size,
                    "ms_per_batch": round(ms, 3), "ms_per_image": round(ms / batch_size, 3),
                    "images_per_s": round(1000 * batch_size / ms, 1),
                    "speedup_vs_torch": round(baseline / ms, 2),
                })
    header = f"{'format':<16}{'threads':>8}{'batch':>6}{'ms/batch':>10}{'ms/img':>9}"
    print(header + f"{'img/s':>9}{'x torch':>9}")
    for row in rows:
        print(f"{row['format']:<16}{row['threads']:>8}{row['batch']:>6}"
              f"{row['ms_per_batch']:>10.3f}{row['ms_per_image']:>9.3f}"
              f"{row['images_per_s']:>9.1f}{row['speedup_vs_torch']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
