"""Adapting a trained model to a new microscope from unlabelled images: self-training.

The model answers the site's own crops (with its test-time views, as capture answers them), the
answers it is sure of become labels (pseudo-labels), and the weights are fine-tuned on them with
the original training images replayed, as a site calibration from reviewed cells is (the
`--finetune` recipe). No label from the site is used; wrong confident answers are learned too,
so measure the result on labelled site cells before relying on it (docs/robustness.md).
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgehemo.cards import ModelCard, card_path_for, write_card
from edgehemo.classes import answer_classes, restricted
from edgehemo.datasets import ImageSet
from edgehemo.errors import DatasetError
from edgehemo.models import resolve_weights
from edgehemo.preprocess import opencv
from edgehemo.train.adapt import MIN_IMAGES, read_site_images
from edgehemo.train.data import predict_probabilities
from edgehemo.train.evaluate import load_model
from edgehemo.train.loop import TrainConfig, train
from edgehemo.views import resolve_views

logger = logging.getLogger(__name__)

# An answer below the capture's low-confidence threshold goes to a reviewer; it is not learned.
PSEUDO_LABEL_CONFIDENCE = 0.6


def pseudo_labels(model: str | Path, site: Path, out: Path, *, limit: int = 2000,
                  confidence: float = PSEUDO_LABEL_CONFIDENCE,
                  classes: str = "nucleated_cells", views: str = "auto") -> dict[str, Any]:
    """Write the site's crops the model is sure of into `out`/<class>/ (replacing what `out`
    held), framed at the model's input size (as classify frames a folder of one site), and
    return what was done. `classes`: the only answers allowed, as `classify --classes` takes
    them (capture's default: no platelet); `views`: the test-time views its answers average
    (`edgehemo.views`; auto: the model's own)."""
    if not 0 <= confidence <= 1:
        raise ValueError(f"confidence {confidence}: a probability, within 0..1")
    weights = resolve_weights(model)
    card = weights.card
    spec = card.preprocessing
    framed, skipped = read_site_images(site, spec, limit)
    net = load_model(weights.checkpoint, card)
    data = ImageSet(framed, np.zeros(len(framed), np.int64), card.classes,
                    tuple(str(i) for i in range(len(framed))), str(site))
    mode = resolve_views(views, spec.test_views, card.name)
    probabilities = predict_probabilities(net, data, spec, tta=mode)
    allowed = answer_classes(classes, card.classes)
    probabilities = restricted(probabilities, allowed)
    sure = np.flatnonzero(probabilities.max(1) >= confidence)
    if len(sure) < MIN_IMAGES:
        raise DatasetError(
            f"{site}: the model is sure ({confidence:.0%} or more) of {len(sure)} of "
            f"{len(framed)} crops, fewer than {MIN_IMAGES}: too few to learn from; calibrate "
            "with reviewed cells instead (edgehemo train --finetune)")
    # written beside `out`, then swapped in: an earlier run's labels never mix with these, and
    # a run that fails half-way leaves no half-written set behind
    partial = out.with_name(f"{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    cv2 = opencv()
    counts: Counter[str] = Counter()
    try:
        for index in sure:
            name = card.classes[int(probabilities[index].argmax())]
            folder = partial / name
            folder.mkdir(parents=True, exist_ok=True)
            bgr = np.ascontiguousarray(framed[index][..., ::-1])
            if not cv2.imwrite(str(folder / f"{index:05d}.png"), bgr):
                raise OSError(f"{folder}: could not write a pseudo-labelled crop")
            counts[name] += 1
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return {"site": str(site), "images": len(framed), "skipped": skipped,
            "kept": len(sure), "confidence": confidence, "classes": classes,
            "views": mode, "counts": dict(sorted(counts.items())),
            "from_checkpoint_sha256": card.checkpoint_sha256}


def self_train_checkpoint(model: str | Path, site: Path, out: Path, replay: Path, *,
                          limit: int = 2000, confidence: float = PSEUDO_LABEL_CONFIDENCE,
                          classes: str = "nucleated_cells", views: str = "auto", seed: int = 0,
                          threads: int = 0, epochs: int | None = None, name: str = ""
                          ) -> tuple[Path, ModelCard]:
    """Write `out`/best.pt + best.json: `model` fine-tuned on its own confident answers for
    `site`'s crops (written to `out`/pseudo_labels/), with `replay`'s training images mixed in
    and its validation split watched, as `edgehemo train --finetune` does."""
    if not Path(replay).exists():
        raise DatasetError(f"{replay}: not found; self-training replays the original training "
                           "data (without it the model forgets the classes the site's crops "
                           "lack)")
    weights = resolve_weights(model)
    labelled = out / "pseudo_labels"
    record = pseudo_labels(model, site, labelled, limit=limit, confidence=confidence,
                           classes=classes, views=views)
    logger.info("%d of %d crops pseudo-labelled: %s", record["kept"], record["images"],
                ", ".join(f"{k} {v}" for k, v in record["counts"].items()))
    config = TrainConfig.from_recipe(
        str(weights.checkpoint), labelled, out, recipe_name="finetune", finetune=True,
        replay=Path(replay), seed=seed, threads=threads, epochs=epochs,
        name=name or f"{weights.card.name}_selftrained")
    result = train(config)
    card = result.card.model_copy(deep=True)
    card.data = {**card.data, "self_trained": record}
    card.notes = (f"{card.notes} Self-trained on {record['kept']} of {record['images']} "
                  f"unlabelled images of {site.name} that {weights.card.name} answered with "
                  f"at least {confidence:.0%} confidence; no site label used. Measure it on "
                  "labelled site images (edgehemo evaluate) before relying on it.").strip()
    write_card(card, card_path_for(result.checkpoint))
    return result.checkpoint, card
