"""Adapting a trained model to a new microscope from unlabelled images: BatchNorm re-estimation.

A model's BatchNorm layers normalise with the mean and variance of the training lab's feature
maps; a new camera, stain or magnification moves those statistics, a documented cause of
cross-lab collapse (Li et al. 2016, "Revisiting batch normalization for practical domain
adaptation"; Tsutsui et al. 2023 for white blood cells). Re-estimating them from a few hundred
cells of the new site - no labels needed, e.g. the crops a capture session saved - is the
cheapest adaptation there is: no weight changes, one forward pass, and the result exports and
runs like any checkpoint.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgehemo.cards import ModelCard, write_card
from edgehemo.datasets import image_files
from edgehemo.errors import DatasetError, ImageReadError
from edgehemo.models import resolve_weights
from edgehemo.preprocess import PreprocessSpec, crop_and_resize, load_image, normalize
from edgehemo.sitescale import framing_scale
from edgehemo.store.atomic import sha256_file, write_atomically
from edgehemo.train.evaluate import load_model

logger = logging.getLogger(__name__)

MIN_IMAGES = 32


def reestimate_batchnorm(model: nn.Module, framed: np.ndarray, spec: PreprocessSpec,
                         batch_size: int = 64) -> int:
    """Replace every BatchNorm layer's running statistics by those of `framed` (uint8 N,S,S,3,
    already framed at the input size); returns the number of layers updated. Weights and the
    learned affine parameters are untouched."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in layers]
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over all batches
        layer.train()
    try:
        with torch.no_grad():
            for start in range(0, len(framed), batch_size):
                model(torch.from_numpy(normalize(framed[start:start + batch_size], spec)))
    finally:
        for layer, (momentum, _) in zip(layers, saved, strict=True):
            layer.momentum = momentum
        model.eval()
    return len(layers)


def read_site_images(folder: Path, spec: PreprocessSpec, limit: int, seed: int = 0
                     ) -> tuple[np.ndarray, int]:
    """Up to `limit` images from `folder` (any layout, labels ignored), framed as `classify`
    frames a folder of one site (with ruler framing, at the magnification measured over them);
    unreadable files are skipped with a warning. Returns the images and how many were skipped."""
    files = image_files(folder)
    if not files:
        raise DatasetError(f"{folder}: no images found (jpg, png, bmp, tif)")
    order = np.random.default_rng(seed).permutation(len(files))[:limit]
    chosen = [files[index] for index in sorted(order)]
    unreadable: set[Path] = set()

    def readable() -> Iterator[np.ndarray]:
        # read once to measure the site's magnification and once to frame, rather than holding
        # up to `limit` raw fields in memory (as the ImageFolder loader does)
        for file in chosen:
            try:
                yield load_image(file)
            except ImageReadError as error:
                if file not in unreadable:
                    logger.warning("skipping %s: %s", file, error)
                    unreadable.add(file)

    scale = framing_scale(readable(), spec)
    red_cell = scale.red_cell if scale is not None else None
    framed = [crop_and_resize(image, spec, red_cell) for image in readable()]
    if len(framed) < MIN_IMAGES:
        raise DatasetError(f"{folder}: {len(framed)} readable images; at least {MIN_IMAGES} are "
                           "needed to estimate the statistics")
    return np.stack(framed), len(unreadable)


def adapt_checkpoint(model: str | Path, site: Path, out: Path, *, limit: int = 512,
                     threads: int = 0, name: str = "") -> tuple[Path, ModelCard]:
    """Write `out`/best.pt + best.json: `model` with BatchNorm statistics from `site`;
    `threads`: torch threads (0: torch's default), as self-training takes them."""
    if threads:
        torch.set_num_threads(threads)
    weights = resolve_weights(model)
    card = weights.card
    spec = card.preprocessing
    net = load_model(weights.checkpoint, card)
    images, skipped = read_site_images(site, spec, limit)
    layers = reestimate_batchnorm(net, images, spec)
    if layers == 0:
        raise DatasetError(f"{card.architecture} has no BatchNorm layer to re-estimate")
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "best.pt"
    write_atomically(checkpoint, _state_bytes(net))
    adapted: dict[str, Any] = {"site": str(site), "images": len(images),
                               "skipped": skipped, "layers": layers,
                               "from_checkpoint_sha256": card.checkpoint_sha256}
    new = card.model_copy(deep=True)
    new.name = name or f"{card.name}_site"
    new.checkpoint_sha256 = sha256_file(checkpoint)
    new.checkpoint_bytes = checkpoint.stat().st_size
    new.data = {**card.data, "batchnorm_adapted": adapted}
    new.metrics = {}  # the old figures were measured with the old statistics
    new.notes = (f"{card.notes} BatchNorm statistics re-estimated from {len(images)} unlabelled "
                 f"images of {site.name}; weights unchanged. Measure it on labelled site images "
                 "(edgehemo evaluate) before relying on it.").strip()
    write_card(new, out / "best.json")
    return checkpoint, new


def _state_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()
