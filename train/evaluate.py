"""Evaluate a checkpoint on a dataset split: the `edgehemo evaluate` command's engine."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgehemo.cards import ModelCard, card_path_for, verify_checkpoint, write_card
from edgehemo.classes import answer_classes, restricted
from edgehemo.datasets import align_classes, load_dataset, reads_whole_folder, renamed_classes
from edgehemo.errors import CheckpointError
from edgehemo.metrics import classification_report, plot_confusion_matrix
from edgehemo.models import resolve_weights
from edgehemo.train.compact import expand_state
from edgehemo.train.data import predict_probabilities
from edgehemo.train.registry import count_parameters, create_model
from edgehemo.views import resolve_views

logger = logging.getLogger(__name__)


def load_model(checkpoint: str | Path, card: ModelCard) -> nn.Module:
    """Build the card's architecture and load the verified state dict (weights_only)."""
    verify_checkpoint(checkpoint, card)
    model = create_model(card.architecture, num_classes=card.num_classes,
                         input_size=card.input_size)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{checkpoint}: cannot be read as a checkpoint ({error})") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint}: expected a state dict, found {type(state).__name__}")
    try:
        model.load_state_dict(expand_state(state))
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"{checkpoint}: weights do not fit {card.architecture} with "
            f"{card.num_classes} classes:\n{error}"
        ) from error
    return model.eval()


def evaluate_checkpoint(
    name_or_path: str | Path,
    data: str | Path,
    split: str = "test",
    *,
    confusion_png: Path | None = None,
    record_in_card: bool = False,
    classes: str | None = None,
    tta: bool | str = "none",
    one_microscope: bool = True,
) -> dict[str, Any]:
    """Full metrics of a shipped model or checkpoint on one split of a dataset; `classes`
    restricts the answers as `classify --classes` does and `tta` averages test-time views
    (`edgehemo.views`; neither is recorded in a card); `one_microscope` frames an ImageFolder
    split at the magnification measured over it."""
    weights = resolve_weights(name_or_path)
    tta = resolve_views(tta, weights.card.preprocessing.test_views, weights.name)
    if (classes is not None or tta != "none") and record_in_card:
        raise ValueError(f"--classes and test-time views ({tta}) change the answers: their "
                         "metrics are not recorded in a card (--write-card takes --views none)")
    allowed = None if classes is None else answer_classes(classes, weights.card.classes)
    model = load_model(weights.checkpoint, weights.card)
    dataset = load_dataset(data, split, weights.card.preprocessing,
                           one_microscope=one_microscope)
    renamed = renamed_classes(dataset, weights.card.classes)
    dataset = align_classes(dataset, weights.card.classes)
    start = time.perf_counter()
    probabilities = predict_probabilities(model, dataset, weights.card.preprocessing, tta=tta)
    if allowed is not None:
        probabilities = restricted(probabilities, allowed)
    seconds = time.perf_counter() - start
    report = classification_report(dataset.labels, probabilities.argmax(1), dataset.classes)
    report.update({
        "model": weights.name,
        "architecture": weights.card.architecture,
        "checkpoint": str(weights.checkpoint),
        "data": str(data),
        "split": split,
        "whole_folder": reads_whole_folder(data),
        "num_params": count_parameters(model),
        "file_bytes": weights.checkpoint.stat().st_size,
        "ms_per_image": 1000 * seconds / max(1, len(dataset)),
        "threads": torch.get_num_threads(),
        "answer_classes": None if allowed is None else [weights.card.classes[i] for i in allowed],
        "class_folders": renamed or None,
        "tta": tta,
        "magnification": dataset.scale._asdict() if dataset.scale is not None else None,
    })
    if confusion_png is not None:
        plot_confusion_matrix(report, confusion_png, title=f"{weights.name} on {split}")
    if record_in_card:
        card = weights.card.model_copy(deep=True)
        card.metrics[split] = {
            "accuracy": round(report["accuracy"], 5),
            "weighted_f1": round(report["weighted_f1"], 5),
            "macro_f1": round(report["macro_f1"], 5),
            "recall": {k: round(v["recall"], 4) for k, v in report["per_class"].items()},
            "num_images": report["num_images"],
            "data": str(data),
        }
        write_card(card, card_path_for(weights.checkpoint))
    return report
