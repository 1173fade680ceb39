"""Red cells as a ruler: the magnification of a field, measured from the field itself.

A red cell is about 7.5 um across on every smear, whatever the microscope, objective or camera,
so its diameter in pixels says how large everything else is. A model trained on PBC's fields
(one analyser, one magnification) learns a white cell's size in its input as a class cue; framing
another lab's cells by a window of the same number of red-cell diameters shows them at PBC's
scale. A window of a fixed number of nucleus extents (`edgehemo.framing.NUCLEUS_WINDOW`) cannot:
it shows every nucleus at the same size, a small lymphocyte as large as a neutrophil.

Only red cells that stand alone are measured: the cell (haemoglobin absorbs green) as an outer
contour, so a pale centre does not split it, that is round and convex (no clump of overlapping
cells, no cell cut by the border), holds no stained nucleus (no white cell) and is at least half
as wide as the widest such cell (not a platelet). The diameter is that of the circle of the same
area; a field's figure is the median over its red cells. Dense fields may have none alone: a
session pools its frames (`RedCellRuler`), counting each red cell once however many frames of a
still field show it. numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from edgehemo.preprocess import opencv, shrunk

# Red-cell diameter on PBC's 360x363 fields, in pixels: the median over the shared PBC training
# fields (`python bench/bench_ruler.py`, 2,400 fields). Models trained on PBC see a window of
# crop_fraction x 360 pixels, so many red-cell diameters.
PBC_RED_CELL_DIAMETER = 72.5
PBC_FIELD_SIDE = 360
# Measured on a copy whose shorter side is this many pixels: fast, and enough for cells that
# span a tenth of a field or more.
WORK_SIDE = 256
# blue - green above this is a stained nucleus (as in edgehemo.framing), not haemoglobin.
NUCLEUS_STAIN = 25
# A lone round red cell: its area at least this share of its convex hull, and of its enclosing
# circle (an ellipse of axis ratio 0.75 passes; two touching cells, ~0.5, do not).
MIN_SOLIDITY = 0.9
MIN_ROUNDNESS = 0.75
# Smaller components (at work resolution, pixels; ~10 px across) are debris or platelets at any
# useful scale: a red cell spans 26 px there in a PBC field at half the magnification.
MIN_AREA_WORK_PX = 80
# Round components under this share of the largest one's diameter are platelets or debris.
MIN_SHARE_OF_LARGEST = 0.5
# A single image's own red cells are trusted from this many; fewer, and it has no ruler. One is
# enough once specks and implausible sizes are left out (edgehemo.framing checks the size against
# the nucleus): on the validation proxy one did better than two on the magnification, wide and
# off-centre shifts and no worse on any other (docs/robustness.md).
MIN_RED_CELLS = 1


class RedCell(NamedTuple):
    """A lone red cell: its centre and the diameter of the circle of its area, in image pixels."""

    x: float
    y: float
    diameter: float


def lone_red_cells(image_rgb: np.ndarray) -> list[RedCell]:
    """Each lone red cell in an RGB uint8 image."""
    cv2 = opencv()
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB uint8 image (H, W, 3), got {image_rgb.dtype} {image_rgb.shape}"
        )
    small, scale = shrunk(image_rgb, WORK_SIDE)
    small = cv2.GaussianBlur(small, (3, 3), 0)
    green = np.ascontiguousarray(small[..., 1])
    nucleus = cv2.subtract(np.ascontiguousarray(small[..., 2]), green) > NUCLEUS_STAIN
    plain = green[~nucleus]
    if plain.size < 2 or int(plain.min()) == int(plain.max()):
        return []
    # Otsu on the pixels that are not nucleus: plasma against red cells, a dark white cell
    # must not take the threshold for itself
    threshold, _ = cv2.threshold(plain.reshape(1, -1), 0, 1,
                                 cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    mask = ((green <= threshold) | nucleus).astype(np.uint8)
    near_nucleus = cv2.dilate(nucleus.astype(np.uint8), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    rows, cols = mask.shape
    cells = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if x == 0 or y == 0 or x + w >= cols or y + h >= rows:
            continue  # cut by the border
        area = cv2.contourArea(contour)
        if area < MIN_AREA_WORK_PX:
            continue
        hull = cv2.contourArea(cv2.convexHull(contour))
        _, radius = cv2.minEnclosingCircle(contour)
        if hull <= 0 or area / hull < MIN_SOLIDITY or area / (np.pi * radius**2) < MIN_ROUNDNESS:
            continue
        inside = np.zeros_like(mask)
        cv2.drawContours(inside, [contour], -1, 1, thickness=-1)
        if int((inside & near_nucleus).sum()) > 0.02 * area:
            continue  # a white cell
        centre_x, centre_y = x + w / 2, y + h / 2
        cells.append(RedCell(centre_x / scale, centre_y / scale,
                             2 * float(np.sqrt(area / np.pi)) / scale))
    if not cells:
        return []
    # a platelet or a speck of debris is round too, but a third of a red cell or less
    smallest = MIN_SHARE_OF_LARGEST * max(cell.diameter for cell in cells)
    return [cell for cell in cells if cell.diameter >= smallest]


def red_cell_diameters(image_rgb: np.ndarray) -> list[float]:
    """The diameter, in the image's pixels, of each lone red cell in an RGB uint8 image."""
    return [cell.diameter for cell in lone_red_cells(image_rgb)]


def red_cell_diameter(image_rgb: np.ndarray, min_cells: int = MIN_RED_CELLS) -> float | None:
    """The median lone red-cell diameter of one image in pixels; None with fewer than
    `min_cells` of them (a tight crop, a dense field)."""
    diameters = red_cell_diameters(image_rgb)
    return float(np.median(diameters)) if len(diameters) >= min_cells else None


def pbc_window_side(crop_fraction: float, red_cell: float) -> float:
    """The side, in pixels of an image whose red cells measure `red_cell`, of the window a model
    trained on PBC fields cut at `crop_fraction` sees: the same number of red-cell diameters."""
    return crop_fraction * PBC_FIELD_SIDE / PBC_RED_CELL_DIAMETER * red_cell


class RedCellRuler:
    """A session's red-cell diameter, pooled over its frames until enough cells are measured.

    The magnification does not change within a session (one slide under one objective), so the
    figure is fixed once `enough` red cells are measured, and frames are no longer measured.
    Until then `current` is the median so far, from `first` cells on. `known`: a site's figure
    measured before (e.g. from an earlier session), fixed from the start.

    A still field is seen in many frames: each red cell counts once. Given how the field moved
    since the previous frame (the tracker's shift), the cells of that frame are moved along and a
    cell found within half a diameter of one of them is the same cell; without a shift (a new
    field, or one the tracker lost) every cell is new.
    """

    def __init__(self, enough: int = 30, *, first: int = 5, known: float | None = None) -> None:
        if enough < 1 or first < 1:
            raise ValueError(f"enough and first must be at least 1, got {enough} and {first}")
        if known is not None and known <= 0:
            raise ValueError(f"a red-cell diameter must be positive, got {known}")
        self.enough = enough
        self.first = min(first, enough)
        self._diameters: list[float] = []
        self._in_view: list[RedCell] = []  # counted cells, where the previous frame had them
        self.diameter: float | None = known

    def update(self, image_rgb: np.ndarray,
               shift: tuple[float, float] | None = None) -> float | None:
        """Measure one more frame unless the figure is fixed; the current figure.

        `shift`: how far the field moved (x, y pixels) since the previous call, for a frame of
        the same field; None for a new field.
        """
        if self.diameter is not None:
            return self.diameter
        rows, cols = image_rgb.shape[:2]
        seen = [] if shift is None else [
            RedCell(cell.x + shift[0], cell.y + shift[1], cell.diameter)
            for cell in self._in_view]
        seen = [cell for cell in seen if 0 <= cell.x < cols and 0 <= cell.y < rows]
        for cell in lone_red_cells(image_rgb):
            if not any(np.hypot(cell.x - old.x, cell.y - old.y) < old.diameter / 2
                       for old in seen):
                self._diameters.append(cell.diameter)
                seen.append(cell)
        self._in_view = seen
        if len(self._diameters) >= self.enough:
            self.diameter = float(np.median(self._diameters))
        return self.current

    @property
    def current(self) -> float | None:
        if self.diameter is not None:
            return self.diameter
        if len(self._diameters) >= self.first:
            return float(np.median(self._diameters))
        return None

    @property
    def measured(self) -> int:
        return len(self._diameters)


class PooledRedCells(NamedTuple):
    """Lone red cells pooled over many images of one site."""

    diameter: float | None  # their median diameter, None where there was none
    cells: int
    images: int
    images_with_cells: int


def pooled_diameter(images: Iterable[np.ndarray]) -> PooledRedCells:
    """The median lone red-cell diameter over many images of one site, and what it came from."""
    diameters: list[float] = []
    count = with_cells = 0
    for image in images:
        found = red_cell_diameters(image)
        count += 1
        with_cells += bool(found)
        diameters += found
    median = float(np.median(diameters)) if diameters else None
    return PooledRedCells(median, len(diameters), count, with_cells)
