"""Classify image files: the engine of `edgehemo classify` (no torch)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgehemo.device.classifier import Classifier
from edgehemo.errors import ImageReadError
from edgehemo.preprocess import load_image
from edgehemo.sitescale import SiteScale, framing_scale

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str
    confidence: float
    topk: list[dict[str, float | str]]

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "label": self.label, "confidence": self.confidence,
                "topk": self.topk}


@dataclass
class ClassifyResult:
    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    scale: SiteScale | None = None  # the magnification measured over all the images


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Files given directly, and every non-hidden file under given directories, sorted."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        else:
            yield path


def classify_paths(classifier: Classifier, paths: Iterable[Path], *, top_k: int = 3,
                   batch_size: int = 32, red_cell: float | None = None,
                   one_microscope: bool = True) -> ClassifyResult:
    """Predictions for every readable image; unreadable files are skipped with the reason.
    `red_cell`: the images' red-cell diameter in pixels, when known for the microscope; needs a
    model that frames with the ruler. Not given, and `one_microscope`, it is measured over all
    the images first (`edgehemo.sitescale`): a tight crop has no ruler of its own."""
    framing = classifier.manifest.preprocessing.framing
    if red_cell is not None and (red_cell <= 0 or framing != "ruler"):
        raise ValueError(
            f"a red-cell diameter must be positive, got {red_cell}" if red_cell <= 0 else
            f"{classifier.manifest.name} frames raw images with {framing!r}, not 'ruler': a "
            "red-cell diameter would not be used")
    paths = list(walk(paths))
    result = ClassifyResult()
    if red_cell is None and one_microscope:
        result.scale = framing_scale(_readable(paths), classifier.manifest.preprocessing)
        red_cell = result.scale.red_cell if result.scale is not None else None
    classes = classifier.manifest.classes
    k = max(1, min(top_k, len(classifier.answer_names)))
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        probabilities = classifier.predict_raw([image for _, image in pending], red_cell)
        for (path, _), row in zip(pending, probabilities, strict=True):
            order = np.argsort(row)[::-1][:k]
            result.predictions.append(Prediction(
                str(path), classes[order[0]], float(row[order[0]]),
                [{"label": classes[i], "probability": round(float(row[i]), 6)} for i in order],
            ))
        pending.clear()

    for path in paths:
        try:
            pending.append((path, load_image(path)))
        except ImageReadError as error:
            result.skipped.append((str(path), str(error).removeprefix(f"{path}: ")))
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return result


def _readable(paths: list[Path]) -> Iterator[np.ndarray]:
    """The readable images, one at a time (a large folder is read twice rather than held in
    memory)."""
    for path in paths:
        try:
            yield load_image(path)
        except ImageReadError:
            continue  # reported by the classifying pass
