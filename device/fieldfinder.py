"""The finder for whole-frame models: the field of view is the one thing to classify.

A model whose manifest says `takes: whole_frame` (e.g. HemoNet trained on a clinic's whole-field
ALL/AML/MM images) sees each field as its training images were framed: the centred square that is
`crop_fraction` of the shorter side, as `edgehemo.preprocess.crop_and_resize` cuts it. The tracker
then treats the field like one large cell: a still or drifting field keeps its track and is
classified once; a new field (a reset, or a pan by half the window) is classified again.
"""

from __future__ import annotations

import numpy as np

from edgehemo.device.cellfinder import FoundCell
from edgehemo.preprocess import centre_square


class WholeFrameFinder:
    def __init__(self, crop_fraction: float = 1.0) -> None:
        if not 0 < crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
        self.crop_fraction = crop_fraction

    def find(self, frame_bgr: np.ndarray) -> list[FoundCell]:
        height, width = frame_bgr.shape[:2]
        top, left, side = centre_square(height, width, self.crop_fraction)
        return [FoundCell(box=(0, 0, width, height), crop=(left, top, left + side, top + side),
                          nucleus_area=0)]
