"""Evaluate an exported model through the device runtime (no torch)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgehemo.datasets import (
    ImageSet,
    align_classes,
    load_dataset,
    reads_whole_folder,
    renamed_classes,
)
from edgehemo.device.classifier import Classifier
from edgehemo.metrics import classification_report


def evaluate_classifier(classifier: Classifier, data: ImageSet) -> tuple[dict[str, Any],
                                                                          np.ndarray]:
    """Report and probabilities of `classifier` on framed images."""
    data = align_classes(data, classifier.manifest.classes)
    start = time.perf_counter()
    probabilities = classifier.predict_framed(data.images)
    seconds = time.perf_counter() - start
    report = classification_report(data.labels, probabilities.argmax(1), data.classes)
    report["ms_per_image"] = 1000 * seconds / max(1, len(data))
    return report, probabilities


def evaluate_artifact(
    name_or_path: str | Path,
    data: str | Path,
    split: str = "test",
    *,
    backend: str = "cpu",
    settings: dict[str, Any] | None = None,
    models_dir: Path | None = None,
    classes: str | None = None,
    tta: bool | str = "none",
    one_microscope: bool = True,
) -> dict[str, Any]:
    """Full metrics of an exported model on one split, through the chosen backend; `classes`
    restricts the answers as `classify --classes` does, `tta` averages test-time views
    (`edgehemo.views`), `one_microscope` frames an ImageFolder split at the magnification
    measured over it."""
    classifier = Classifier.load(name_or_path, backend=backend, settings=settings,
                                 models_dir=models_dir, tta=tta, classes=classes)
    dataset = load_dataset(data, split, classifier.manifest.preprocessing,
                           one_microscope=one_microscope)
    renamed = renamed_classes(dataset, classifier.manifest.classes)
    report, _ = evaluate_classifier(classifier, dataset)
    report.update({
        "class_folders": renamed or None,
        "model": classifier.artifact.name,
        "architecture": classifier.manifest.architecture,
        "checkpoint": str(classifier.artifact.path),
        "format": classifier.manifest.format,
        "precision": classifier.manifest.precision,
        "backend": backend,
        "runtime": classifier.backend.runtime_version(),
        "data": str(data),
        "split": split,
        "whole_folder": reads_whole_folder(data),
        "file_bytes": classifier.manifest.bytes,
        "answer_classes": None if classes is None else classifier.answer_names,
        "tta": classifier.tta,
        "magnification": dataset.scale._asdict() if dataset.scale is not None else None,
    })
    return report
