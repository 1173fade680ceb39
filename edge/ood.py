"""Is this crop like the images the model learnt from? A cheap colour-statistics check.

A new microscope, camera or stain changes the colours of a crop before it changes anything else,
and that is when the classifier fails (issue: 98% in the lab, ~10% in another lab). Each framed
crop is summarised by six numbers, the mean and the standard deviation of its R, G and B channels
(0..1), and compared with the training crops by Mahalanobis distance. The threshold is the 99.5th
percentile of the training crops' own distances, so about 1 training crop in 200 is "unfamiliar".

This detects a shift in imaging (stain, white balance, exposure), not a new kind of cell; low
confidence is the other signal. Stored in the artifact's manifest; numpy only.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

UNFAMILIAR = "unfamiliar"
QUANTILE = 99.5
# a session whose cells are mostly unfamiliar is flagged once it has this many cells
SESSION_MIN_CELLS = 10
SESSION_MAJORITY = 0.5


def session_looks_unfamiliar(cells: int, unfamiliar: int) -> bool:
    """Most of a session's cells look unlike the training images: a new microscope or stain."""
    return cells >= SESSION_MIN_CELLS and unfamiliar > SESSION_MAJORITY * cells


def unfamiliar_warning(cells: int, unfamiliar: int) -> str:
    return (f"{unfamiliar} of {cells} cells look unlike the images the model was trained on "
            "(another microscope, camera or stain?): the counts are not reliable here until "
            "the site is calibrated")


def colour_features(images: np.ndarray) -> np.ndarray:
    """(N, 6): per-channel mean and standard deviation of uint8 RGB images (N, H, W, 3), 0..1."""
    pixels = images.reshape(len(images), -1, 3).astype(np.float32) / 255.0
    return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)


class ColourReference(BaseModel):
    """The training crops' colour statistics and the distance beyond which a crop is unfamiliar."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: tuple[float, ...] = Field(description="Mean of the 6 colour features.")
    inverse_covariance: tuple[tuple[float, ...], ...]
    threshold: float = Field(description=f"{QUANTILE}th percentile of training distances.")
    fitted_on: str = Field("", description="What the statistics were computed from.")

    @classmethod
    def fit(cls, images: np.ndarray, fitted_on: str = "") -> ColourReference:
        features = colour_features(images).astype(np.float64)
        mean = features.mean(axis=0)
        covariance = np.cov(features, rowvar=False) + 1e-6 * np.eye(features.shape[1])
        inverse = np.linalg.inv(covariance)
        reference = cls(mean=tuple(mean.round(6)), threshold=1.0, fitted_on=fitted_on,
                        inverse_covariance=tuple(tuple(row) for row in inverse.round(4)))
        threshold = float(np.percentile(reference.distances(images), QUANTILE))
        return reference.model_copy(update={"threshold": round(threshold, 4)})

    def distances(self, images: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each framed uint8 RGB image (N, H, W, 3)."""
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        delta = colour_features(images) - np.asarray(self.mean, dtype=np.float32)
        inverse = np.asarray(self.inverse_covariance, dtype=np.float32)
        return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", delta, inverse, delta), 0.0))

    def unfamiliar(self, images: np.ndarray) -> np.ndarray:
        return self.distances(images) > self.threshold
