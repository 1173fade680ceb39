"""Quality gate: frames that are out of focus, badly exposed or colour-cast are never classified.

Figures are computed on a grey copy resized to 320 pixels wide, so thresholds do not depend on the
camera's resolution. Defaults, from `bench/bench_frame_stages.py` on the 364 BCCD smear frames:
their Laplacian variance at that width is 14-48 (median 23) and 3.7-10.8 once blurred (Gaussian
sigma 1.7), so `min_focus = 10` keeps all of them and rejects 362 of the blurred copies; their
brightest fifth is neutral within 7.5 % (cast) and at most 0.05 % of pixels are clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgehemo.preprocess import opencv

ANALYSIS_WIDTH = 320


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_focus: float = Field(10.0, ge=0, description="Minimum variance of the Laplacian.")
    max_clipped: float = Field(
        0.5, ge=0, le=1, description="Largest fraction of pixels with a channel at 250 or more."
    )
    min_brightness: float = Field(40.0, ge=0, le=255, description="Minimum mean grey level.")
    max_cast: float = Field(
        0.3, ge=0, description="Largest channel spread of the brightest fifth, over its mean."
    )


@dataclass(frozen=True)
class QualityResult:
    ok: bool
    reason: str | None
    focus: float
    clipped: float
    brightness: float
    cast: float


class QualityGate:
    def __init__(self, settings: QualitySettings | None = None) -> None:
        self.settings = settings or QualitySettings()

    def assess(self, frame_bgr: np.ndarray) -> QualityResult:
        cv2 = opencv()
        height, width = frame_bgr.shape[:2]
        small = cv2.resize(
            frame_bgr, (ANALYSIS_WIDTH, max(1, round(ANALYSIS_WIDTH * height / width))),
            interpolation=cv2.INTER_AREA,
        ) if width > ANALYSIS_WIDTH else frame_bgr
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        _, deviation = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
        focus = float(deviation[0, 0]) ** 2
        blue, green, red = cv2.split(small)
        brightest = cv2.max(cv2.max(blue, green), red)
        clipped = cv2.countNonZero(cv2.compare(brightest, 250, cv2.CMP_GE)) / grey.size
        brightness = float(cv2.mean(grey)[0])
        # the brightest fifth of the frame is the background: it should be grey, not tinted
        histogram = np.bincount(grey.ravel(), minlength=256)
        level = int(np.searchsorted(np.cumsum(histogram), 0.8 * grey.size))
        mask = cv2.compare(grey, level, cv2.CMP_GE)
        means = np.asarray(cv2.mean(small, mask=mask)[:3])
        cast = float((means.max() - means.min()) / max(1.0, float(means.mean())))
        reason = self._reason(focus, clipped, brightness, cast)
        return QualityResult(reason is None, reason, focus, clipped, brightness, cast)

    def _reason(self, focus: float, clipped: float, brightness: float, cast: float) -> str | None:
        s = self.settings
        if brightness < s.min_brightness:
            return "too dark"
        if clipped > s.max_clipped:
            return "overexposed"
        if focus < s.min_focus:
            return "out of focus"
        if cast > s.max_cast:
            return "colour cast"
        return None
