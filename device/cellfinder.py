"""Find white blood cells in a whole microscope frame and frame them like the training crops.

Stained nuclei of white cells are the most blue-violet thing on a smear: red cells and plasma are
pink or pale, so `blue - green` separates them. This is the colour idea of the LAB/a* segmentation
in "Deep Learning with Self-Attention and Enhanced Preprocessing" (threshold a stain channel, close,
fill, keep connected components) made cheap for a Raspberry Pi: one fixed threshold instead of
k-means, computed on a mask downscaled 4x. Thresholds were tuned on the BCCD trainval list
(`bench/bench_cellfinder.py`) and reported on its test list.

Two boxes come out for each cell:
- `box`: an estimate of the whole cell (nucleus box grown by `box_scale`), what detection metrics
  compare with annotated cell boxes;
- `crop`: the square window handed to the classifier, `crop_scale` times the nucleus extent, which
  reproduces the framing of the PBC training images (a 200-pixel window around a nucleus that
  spans ~128 pixels, measured by the same finder on the PBC training images).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgehemo.framing import NUCLEUS_WINDOW, window
from edgehemo.preprocess import opencv

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, x1/y1 exclusive


# BCCD's lone red cells measure 88.6 px across in its 640x480 frames (bench/bench_ruler.py), the
# frames the default sizes were tuned on
TUNED_RED_CELL_PX = 88.6


class CellFinderSettings(BaseModel):
    """Thresholds of the cell finder; the defaults come from the BCCD trainval tuning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    downscale: int = Field(4, ge=1, le=16, description="Mask resolution divisor.")
    stain_threshold: int = Field(
        60, ge=0, le=255, description="Minimum blue-minus-green of a nucleus pixel."
    )
    close_px: int = Field(
        9, ge=0, description="Closing kernel at mask resolution; joins nucleus lobes."
    )
    min_area_px: int = Field(
        3000, ge=0, description="Smallest nucleus area in frame pixels; drops platelets."
    )
    max_area_fraction: float = Field(
        0.5, gt=0, le=1, description="Largest nucleus area as a fraction of the frame."
    )
    box_scale: float = Field(1.3, gt=0, description="Cell box side / nucleus box side.")
    crop_scale: float = Field(
        NUCLEUS_WINDOW, gt=0,
        description="Classifier window / nucleus extent (window = 'nucleus', or until the "
        "session's red cells are measured).",
    )
    window: Literal["red_cells", "nucleus"] = Field(
        "red_cells",
        description="red_cells: once the session's lone red cells have been measured, the "
        "classifier window holds as many red-cell diameters as the model's training window, "
        "so cells are seen at the training magnification (edgehemo.ruler); nucleus: always "
        "crop_scale x the nucleus extent.",
    )
    red_cell_px: float | None = Field(
        None, gt=0,
        description="This microscope's red-cell diameter in frame pixels, if known (e.g. from an "
        "earlier session's record): used from the first frame instead of measuring.",
    )
    red_cells_to_measure: int = Field(
        30, ge=1, description="Lone red cells measured before the session's figure is fixed."
    )
    drop_edge_cells: bool = Field(
        False, description="Ignore nuclei that touch the frame border (cut-off cells)."
    )
    sizes_follow_red_cells: bool = Field(
        True,
        description="With window = red_cells: once the session's red-cell diameter is known "
        "(red_cell_px, or measured and fixed), scale downscale, close_px and min_area_px by it "
        "over tuned_red_cell_px, so "
        "that another objective or camera resolution finds the same cells; false keeps them as "
        "set (sizes tuned by hand for this camera).",
    )
    tuned_red_cell_px: float = Field(
        TUNED_RED_CELL_PX, gt=0,
        description="Red-cell diameter in the frames the pixel sizes above are meant for "
        "(the defaults: BCCD's 640x480 frames).",
    )

    def at_red_cell(self, red_cell: float) -> CellFinderSettings:
        """These settings for frames whose red cells measure `red_cell` pixels."""
        if not self.sizes_follow_red_cells:
            return self
        if red_cell <= 0:
            raise ValueError(f"a red-cell diameter must be positive, got {red_cell}")
        scale = red_cell / self.tuned_red_cell_px
        return self.model_copy(update={
            "downscale": min(16, max(1, round(self.downscale * scale))),
            "close_px": round(self.close_px * scale),
            "min_area_px": round(self.min_area_px * scale * scale),
            "tuned_red_cell_px": red_cell,
        })


@dataclass(frozen=True)
class FoundCell:
    """One white cell in a frame: its estimated box, its classifier window and nucleus area."""

    box: Box
    crop: Box
    nucleus_area: int

    @property
    def center(self) -> tuple[float, float]:
        return ((self.crop[0] + self.crop[2]) / 2, (self.crop[1] + self.crop[3]) / 2)


class CellFinder:
    """Stateless per frame: `find(frame_bgr)` returns the white cells it sees."""

    def __init__(self, settings: CellFinderSettings | None = None) -> None:
        self.settings = settings or CellFinderSettings()
        cv2 = opencv()
        size = self.settings.close_px
        self._kernel = (
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) if size > 1 else None
        )

    def mask(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The nucleus mask (uint8 0/1) at 1/downscale of the frame's resolution."""
        cv2 = opencv()
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(
                f"expected a BGR uint8 frame (H, W, 3), got {frame_bgr.dtype} {frame_bgr.shape}"
            )
        step = self.settings.downscale
        height, width = frame_bgr.shape[:2]
        small = (
            cv2.resize(frame_bgr, (max(1, width // step), max(1, height // step)),
                       interpolation=cv2.INTER_AREA)
            if step > 1 else frame_bgr
        )
        blue, green = small[..., 0], small[..., 1]
        # saturating uint8 subtraction: green > blue gives 0, never wraps
        stain = cv2.subtract(blue, green)
        _, mask = cv2.threshold(stain, self.settings.stain_threshold, 1, cv2.THRESH_BINARY)
        if self._kernel is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._kernel)
        return mask

    def find(self, frame_bgr: np.ndarray) -> list[FoundCell]:
        cv2 = opencv()
        settings = self.settings
        step = settings.downscale
        mask = self.mask(frame_bgr)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        height, width = frame_bgr.shape[:2]
        max_area = settings.max_area_fraction * height * width
        cells = []
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            area_px = area * step * step
            if area_px < settings.min_area_px or area_px > max_area:
                continue
            if settings.drop_edge_cells and (
                x == 0 or y == 0 or x + w >= mask.shape[1] or y + h >= mask.shape[0]
            ):
                continue
            cx, cy = (x + w / 2) * step, (y + h / 2) * step
            half_w, half_h = w * step * settings.box_scale / 2, h * step * settings.box_scale / 2
            box = _clip((cx - half_w, cy - half_h, cx + half_w, cy + half_h), width, height)
            half = max(w, h) * step * settings.crop_scale / 2
            crop = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
            cells.append(FoundCell(box=box, crop=crop, nucleus_area=area_px))
        return cells


def with_window(cell: FoundCell, side: float) -> FoundCell:
    """`cell` with a classifier window of `side` pixels around the same centre."""
    cx, cy = cell.center
    half = side / 2
    return replace(cell, crop=(round(cx - half), round(cy - half),
                               round(cx - half) + round(side), round(cy - half) + round(side)))


def box_iou(a: Box | tuple[float, ...], b: Box | tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _clip(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (max(0, round(x0)), max(0, round(y0)), min(width, round(x1)), min(height, round(y1)))


def grow(box: Box, factor: float) -> Box:
    """`box` scaled about its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return (round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h))


def cut_crops(frame_bgr: np.ndarray, cells: list[FoundCell], input_size: int) -> np.ndarray:
    """The classifier windows as framed RGB uint8 images (N, S, S, 3), resized with area
    averaging like `edgehemo.preprocess.crop_and_resize`."""
    cv2 = opencv()
    out = np.empty((len(cells), input_size, input_size, 3), dtype=np.uint8)
    for index, cell in enumerate(cells):
        resized = cv2.resize(window(frame_bgr, cell.crop), (input_size, input_size),
                             interpolation=cv2.INTER_AREA)
        out[index] = resized[..., ::-1]  # BGR -> RGB; commutes with the resize
    return out
