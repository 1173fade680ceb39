"""Load an exported model by name on a backend, verified, and classify cell images with it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from edgehemo.classes import answer_classes, restricted
from edgehemo.device.backends.base import Backend, BackendError, backend_class
from edgehemo.errors import CheckpointError
from edgehemo.manifest import ArtifactManifest, verify_artifact
from edgehemo.models import Artifact, resolve_artifact
from edgehemo.preprocess import crop_and_resize, normalize
from edgehemo.views import TtaMode, resolve_views, tta_views

logger = logging.getLogger(__name__)
MAX_BATCH_ROWS = 64  # images per runtime call when test-time views are averaged


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class Classifier:
    """An artifact running on a backend; probabilities for framed or raw cell images.

    `tta`: the test-time views whose probabilities are averaged (`edgehemo.views`): "none",
    "mirror" (each image and its mirror images, 4 runs), "stain" (eight stain hues, 8 runs; only
    for a model trained under varied stain hues) or "auto" (the views the manifest names);
    True means "mirror". docs/robustness.md measures what they change. `answers`: indices of
    the only classes an answer may name (`restrict_answers`), their probabilities
    renormalised; None: every class.
    """

    artifact: Artifact
    backend: Backend
    tta: TtaMode = "none"
    answers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # "auto" becomes the manifest's views; the former True / False are read as well
        self.tta = resolve_views(self.tta, self.manifest.preprocessing.test_views,
                                 self.manifest.name)

    @property
    def manifest(self) -> ArtifactManifest:
        return self.artifact.manifest

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        backend: str = "cpu",
        settings: dict[str, Any] | None = None,
        models_dir: Path | None = None,
        tta: bool | str = "none",
        classes: str | None = None,
    ) -> Classifier:
        """Resolve, verify (sha256, input spec) and warm up a model on `backend`; `classes`:
        the only classes an answer may name, as `restrict_answers` takes them."""
        backend_type = backend_class(backend)
        artifact = resolve_artifact(name_or_path, formats=backend_type.formats,
                                    models_dir=models_dir)
        verify_artifact(artifact.path, artifact.manifest)
        try:
            backend_settings = backend_type.settings_class(**(settings or {}))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise BackendError(f"invalid settings for backend {backend!r}: {problems}") from error
        runner = backend_type(artifact.path, artifact.manifest, backend_settings)
        classifier = cls(artifact, runner, tta)  # type: ignore[arg-type]  # resolved in __post_init__
        classifier._check_input_spec()
        if classes is not None:
            classifier.restrict_answers(classes)
        # The first inference allocates and plans; doing it now keeps it off the first frame.
        size = artifact.manifest.preprocessing.input_size
        classifier.backend.run(np.zeros((1, 3, size, size), dtype=np.float32))
        return classifier

    def restrict_answers(self, spec: str) -> None:
        """Let answers name only the classes `spec` gives (`edgehemo.classes.answer_classes`:
        comma-separated names, white_cells, nucleated_cells or all)."""
        allowed = answer_classes(spec, self.manifest.classes)
        self.answers = None if len(allowed) == len(self.manifest.classes) else allowed

    @property
    def answer_names(self) -> list[str]:
        """The classes an answer may name."""
        classes = self.manifest.classes
        return list(classes) if self.answers is None else [classes[i] for i in self.answers]

    def _check_input_spec(self) -> None:
        real = self.backend.input_shape()
        declared = self.manifest.input.shape
        if len(real) != len(declared) or any(
            isinstance(r, int) and isinstance(d, int) and r != d
            for r, d in zip(real, declared, strict=False)
        ):
            raise CheckpointError(
                f"{self.artifact.path}: the model's input is {real} but its manifest says "
                f"{declared}; the manifest belongs to another model"
            )

    def predict_framed(self, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, classes) for uint8 images already at the input size (N, S, S, 3)."""
        out = [self._probabilities(images[i : i + batch_size])
               for i in range(0, len(images), batch_size)]
        if not out:
            return np.zeros((0, len(self.manifest.classes)), dtype=np.float32)
        return np.concatenate(out)

    def predict_raw(self, images: list[np.ndarray], red_cell: float | None = None) -> np.ndarray:
        """Probabilities for raw RGB images of any size, framed by the manifest's preprocessing;
        `red_cell`: the images' red-cell diameter in pixels, if known (ruler framing)."""
        if not images:
            return np.zeros((0, len(self.manifest.classes)), dtype=np.float32)
        spec = self.manifest.preprocessing
        return self._probabilities(
            np.stack([crop_and_resize(image, spec, red_cell) for image in images]))

    def _probabilities(self, framed: np.ndarray) -> np.ndarray:
        """Probabilities for framed uint8 images, averaged over the test-time views."""
        views = tta_views(framed, self.tta)
        # Several views per runtime call (a call costs more than a few extra rows), at most
        # MAX_BATCH_ROWS rows per call (a 224x224 model's batch of 32 images x 8 views would
        # take 150 MB). Summed view by view in order, as a mean over all of them would be.
        per_call = max(1, MAX_BATCH_ROWS // len(framed))
        total = np.zeros((len(framed), len(self.manifest.classes)), np.float32)
        for start in range(0, len(views), per_call):
            group = views[start : start + per_call]
            batch = normalize(group[0] if len(group) == 1 else np.concatenate(group),
                              self.manifest.preprocessing)
            for probabilities in softmax(self.backend.run(batch)).reshape(len(group),
                                                                          len(framed), -1):
                total += probabilities
        probabilities = total / len(views)
        return probabilities if self.answers is None else restricted(probabilities, self.answers)
