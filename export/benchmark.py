"""`edgehemo benchmark`: every format of one model, measured in one run.

One row per format (torch eager when torch is installed, then each exported artifact): status,
size, accuracy on a split, median ms per image at each thread count, images per second and the
speed-up over torch eager (or over the first row without torch). Warm-up runs are discarded.
Timings on a shared machine are noisy: formats are timed in alternating rounds, and the ratios
within one run are what to compare.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgehemo.datasets import load_dataset
from edgehemo.device.classifier import Classifier
from edgehemo.device.evaluate import evaluate_classifier
from edgehemo.errors import EdgehemoError
from edgehemo.models import list_artifacts, list_shipped, resolve_weights

logger = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], object]
BACKEND_FOR_FORMAT = {".onnx": "cpu", ".tflite": "tflite"}


@dataclass
class BenchmarkRow:
    format: str
    name: str
    status: str = "passed"
    megabytes: float = 0.0
    accuracy: float | None = None
    ms_per_image: dict[str, float] = field(default_factory=dict)  # "threads x batch" -> ms
    images_per_s: dict[str, float] = field(default_factory=dict)
    speedup: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_ms(fn: Callable[[], object], *, warmup: int = 10, repeats: int = 100) -> float:
    """Median wall time of `fn` in milliseconds, after `warmup` discarded calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved_median_ms(fns: list[Callable[[], object]], *, repeats: int = 100,
                          warmup: int = 10, rounds: int = 10) -> list[float]:
    """Median ms per call of each of `fns`, measured in alternating rounds.

    On a shared machine the speed drifts over seconds; timing each function in turn, a slice at a
    time, exposes all of them to the same drift, so their ratios stay comparable. The first call
    of each slice is not timed: it pays for the caches the previous function evicted.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    rounds = max(1, min(rounds, repeats))
    per_round = max(1, repeats // rounds)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, times in zip(fns, samples, strict=True):
            fn()
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1000)
    return [statistics.median(times) for times in samples]


def _torch_loader(model_name: str) -> tuple[BenchmarkRow, Callable[[int], Runner], int] | None:
    """A row and a runner factory for torch eager, or None when torch is not installed."""
    try:
        import torch

        from edgehemo.train.evaluate import load_model
    except ImportError:
        return None
    weights = resolve_weights(model_name)
    model = load_model(weights.checkpoint, weights.card)

    def make(threads: int) -> Runner:
        torch.set_num_threads(threads)

        def run(batch: np.ndarray) -> object:
            with torch.inference_mode():
                return model(torch.from_numpy(batch))

        return run

    row = BenchmarkRow("torch", weights.name, megabytes=weights.checkpoint.stat().st_size / 1e6)
    return row, make, weights.card.input_size


def benchmark(
    model: str,
    *,
    data: Path | None = None,
    split: str = "test",
    threads: list[int] | None = None,
    batch_sizes: list[int] | None = None,
    repeats: int = 100,
) -> list[BenchmarkRow]:
    """Benchmark torch weights `model` (if shipped and torch is installed) and every exported
    artifact named `<model>_<precision>`."""
    threads = threads or [1]
    batch_sizes = batch_sizes or [1]
    has_weights = any(w.name == model for w in list_shipped())
    paths = [a.path for a in list_artifacts() if a.name.rsplit("_", 1)[0] == model]
    if not has_weights and not paths:
        raise EdgehemoError(f"nothing to benchmark for {model!r}: no weights and no artifacts")
    rows: list[BenchmarkRow] = []
    factories: list[tuple[BenchmarkRow, Callable[[int], Runner]]] = []
    input_size = 0
    torch_entry = _torch_loader(model) if has_weights else None
    if torch_entry is not None:
        row, make, input_size = torch_entry
        rows.append(row)
        factories.append((row, make))
    for path in paths:
        backend = BACKEND_FOR_FORMAT[path.suffix]
        try:
            classifier = Classifier.load(path, backend=backend, settings={"threads": threads[0]})
        except EdgehemoError as error:
            rows.append(BenchmarkRow(path.suffix[1:], path.stem, status=f"failed: {error}"))
            continue
        manifest = classifier.manifest
        input_size = manifest.preprocessing.input_size
        row = BenchmarkRow(f"{manifest.format}-{manifest.precision}", path.stem,
                           megabytes=manifest.bytes / 1e6)
        if data is not None:
            dataset = load_dataset(data, split, manifest.preprocessing)
            row.accuracy = evaluate_classifier(classifier, dataset)[0]["accuracy"]
        rows.append(row)
        factories.append((row, lambda t, p=path, b=backend: Classifier.load(
            p, backend=b, settings={"threads": t}).backend.run))
    rng = np.random.default_rng(0)
    for thread_count in threads:
        runners = [(row, make(thread_count)) for row, make in factories]
        for batch_size in batch_sizes:
            key = f"{thread_count}x{batch_size}"
            batch = rng.standard_normal((batch_size, 3, input_size, input_size))
            batch = batch.astype(np.float32)
            timings = interleaved_median_ms(
                [lambda r=run, b=batch: r(b) for _, run in runners],
                repeats=max(20, repeats // batch_size))
            baseline = timings[0] if timings else 0.0
            for (row, _), ms in zip(runners, timings, strict=True):
                row.ms_per_image[key] = round(ms / batch_size, 4)
                row.images_per_s[key] = round(1000 * batch_size / ms, 1)
                row.speedup[key] = round(baseline / ms, 2)
    return rows


def to_markdown(rows: list[BenchmarkRow]) -> str:
    """The rows as a Markdown table, one column group per threads x batch setting."""
    keys = sorted({k for row in rows for k in row.ms_per_image},
                  key=lambda k: tuple(int(p) for p in k.split("x")))
    header = ["format", "name", "status", "MB", "accuracy"]
    for key in keys:
        header += [f"ms/img {key}", f"img/s {key}", f"speed-up {key}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.format, row.name, row.status, f"{row.megabytes:.2f}",
                 f"{row.accuracy:.4f}" if row.accuracy is not None else "-"]
        for key in keys:
            cells += [str(row.ms_per_image.get(key, "-")), str(row.images_per_s.get(key, "-")),
                      str(row.speedup.get(key, "-"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
