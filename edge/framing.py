"""Frame a single-cell image around its white cell, whatever the crop it came in.

A crop handed to `classify` may be a tight 100-pixel box around a cell or a 300-pixel field with
red cells around it; a fixed centre crop (PBC's framing) cuts the first and shrinks the second.
Both framings below find the white cell's nucleus, the most blue-violet thing in the image
(`blue - green`, as the capture's cell finder does on whole frames, with Otsu's threshold because
a single crop has no fixed exposure):
- `cell`: the square window of `NUCLEUS_WINDOW` times the nucleus extent around it, the framing
  the capture daemon gives the crops it cuts from frames (for models trained with it);
- `auto`: the centre window a model was trained on, unless the crop is clearly framed otherwise
  (the nucleus much wider than that window, or far from its centre), then a window around the
  nucleus;
- `ruler`: a window of as many red-cell diameters as the training window, around the nucleus,
  where the red cells give the magnification (`edgehemo.ruler`); `auto` where they do not.
Parts of a window past the image border are filled by replicating the edge, so the cell stays
centred. numpy and OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgehemo.preprocess import opencv, shrunk
from edgehemo.ruler import pbc_window_side, red_cell_diameter

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, x1/y1 exclusive

# Classifier window / nucleus extent: a 200-pixel PBC window around a nucleus that spans ~128
# pixels (measured on the PBC training images); the capture's cell finder uses the same ratio.
NUCLEUS_WINDOW = 1.55
# The nucleus is looked for on a copy whose shorter side is this many pixels (fast, and the
# closing below then joins a neutrophil's lobes at any input resolution).
WORK_SIDE = 128
# Otsu's threshold on blue - green, never below this: a crop with no stained nucleus (plasma and
# red cells only) must not make one out of noise. The lowest Otsu threshold on PBC images is ~24.
MIN_STAIN = 25
# Width of the Gaussian that favours nuclei near the image centre, as a share of its shorter side:
# a single-cell image is centred on its cell, and a neighbour at the edge must not win.
CENTRE_SPREAD = 0.2
# auto framing keeps the centre window unless the crop is clearly not framed like the training
# fields: the nucleus is wider than AUTO_MAX_EXTENT windows (a tight crop) or its centre is more
# than AUTO_MAX_OFFSET windows off the window's centre (an off-centre crop). Chosen on the
# validation robustness proxy (docs/robustness.md) among stricter and looser thresholds: the
# loosest that leaves the unshifted PBC fields' accuracy within 0.3 points.
AUTO_MAX_EXTENT = 1.2
AUTO_MAX_OFFSET = 0.25
# ruler framing leaves a window within this share of the training window's side to auto framing:
# PBC's own fields measure 66.3-80.5 px red cells (10th-90th percentile, bench/bench_ruler.py)
# around 72.5, and re-centring them would only add noise.
RULER_SAME_SCALE = 0.15
# A red cell's diameter over a white cell's nucleus extent: ~0.36-0.9 on PBC (a 72.5 px red cell,
# nuclei of 80-200 px); outside these bounds the "red cells" measured are something else.
RED_CELL_PER_NUCLEUS = (0.25, 1.25)
# A nucleus smaller than this share of the image is taken as noise, and the centre crop is used.
MIN_NUCLEUS_SHARE = 0.002


@dataclass(frozen=True)
class Nucleus:
    """The chosen nucleus, in the image's pixels: centre and extent (longer box side)."""

    cx: float
    cy: float
    extent: float


def locate_nucleus(image_rgb: np.ndarray) -> Nucleus | None:
    """The white cell's nucleus nearest the image centre (the largest stained component,
    weighted by closeness; the closing joins a nucleus's lobes); None where none is seen."""
    cv2 = opencv()
    small, scale = shrunk(image_rgb, WORK_SIDE)
    stain = cv2.subtract(np.ascontiguousarray(small[..., 2]), np.ascontiguousarray(small[..., 1]))
    otsu, _ = cv2.threshold(stain, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, mask = cv2.threshold(stain, max(otsu, MIN_STAIN), 1, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    rows, cols = mask.shape
    spread = CENTRE_SPREAD * min(rows, cols)
    offsets = centroids[1:] - np.array([cols / 2, rows / 2])
    score = stats[1:, 4] * np.exp(-(offsets**2).sum(1) / (2 * spread**2))
    chosen = 1 + int(np.argmax(score))
    if stats[chosen, 4] < MIN_NUCLEUS_SHARE * rows * cols:
        return None
    x, y, w, h = (int(v) for v in stats[chosen, :4])
    x0, y0, x1, y1 = x, y, x + w, y + h
    return Nucleus(cx=(x0 + x1) / 2 / scale, cy=(y0 + y1) / 2 / scale,
                   extent=max(x1 - x0, y1 - y0) / scale)


def cell_window(image_rgb: np.ndarray, ratio: float = NUCLEUS_WINDOW) -> Box | None:
    """The square classifier window, `ratio` times the nucleus extent, around the white cell, or
    None where none is found."""
    nucleus = locate_nucleus(image_rgb)
    if nucleus is None:
        return None
    return _around(nucleus, ratio * nucleus.extent)


def ruler_window(image_rgb: np.ndarray, crop_fraction: float,
                 red_cell: float | None = None) -> Box | None:
    """The window of as many red-cell diameters as a PBC-trained model's training window
    (`crop_fraction` of PBC's field), around the white cell's nucleus (the image centre where
    none is found). `red_cell`: the site's red-cell diameter in this image's pixels; measured on
    the image's own lone red cells when not given. None where there is no ruler, or where it
    says the image is at the training magnification (then auto framing decides)."""
    if red_cell is None:
        red_cell = red_cell_diameter(image_rgb)
    if red_cell is None:
        return None
    if red_cell <= 0:
        raise ValueError(f"a red-cell diameter must be positive, got {red_cell}")
    side = pbc_window_side(crop_fraction, red_cell)
    height, width = image_rgb.shape[:2]
    if abs(side / (crop_fraction * min(height, width)) - 1) <= RULER_SAME_SCALE:
        return None  # PBC's magnification: as the model was trained, the centre window
    nucleus = locate_nucleus(image_rgb)
    if nucleus is not None and not (
            RED_CELL_PER_NUCLEUS[0] <= red_cell / nucleus.extent <= RED_CELL_PER_NUCLEUS[1]):
        return None  # no red cell is that size beside a white cell's nucleus: a false ruler
    centre = nucleus or Nucleus(cx=width / 2, cy=height / 2, extent=0.0)
    return _around(centre, side)


def auto_window(image_rgb: np.ndarray, centre: Box) -> Box:
    """`centre` (the window the model was trained on), unless the white cell's nucleus is much
    wider than it (a tight crop) or far from its centre (an off-centre crop): then a window
    around the nucleus, no smaller than `centre` and at least `NUCLEUS_WINDOW` times the
    nucleus extent."""
    nucleus = locate_nucleus(image_rgb)
    if nucleus is None:
        return centre
    x0, y0, x1, y1 = centre
    side = x1 - x0
    too_wide = nucleus.extent > AUTO_MAX_EXTENT * side
    off_centre = max(abs(nucleus.cx - (x0 + x1) / 2),
                     abs(nucleus.cy - (y0 + y1) / 2)) > AUTO_MAX_OFFSET * side
    if not (too_wide or off_centre):
        return centre
    return _around(nucleus, max(side, NUCLEUS_WINDOW * nucleus.extent))


def _around(nucleus: Nucleus, side: float) -> Box:
    size = max(1, round(side))
    x0, y0 = round(nucleus.cx - size / 2), round(nucleus.cy - size / 2)
    return x0, y0, x0 + size, y0 + size


def reframe(images: np.ndarray) -> np.ndarray:
    """Cell framing of images that were framed another way (N, S, S, 3) -> (N, S, S, 3): the
    view of a training set the model sees when cell framing is its preprocessing."""
    cv2 = opencv()
    out = images.copy()
    size = images.shape[1:3][::-1]
    for index, image in enumerate(images):
        box = cell_window(image)
        if box is not None:
            out[index] = cv2.resize(window(image, box), size, interpolation=cv2.INTER_AREA)
    return out


def window(image: np.ndarray, box: Box) -> np.ndarray:
    """The image inside `box`; parts past the image border are filled by replicating the edge,
    so a cell near the border stays centred."""
    cv2 = opencv()
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    inner = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    pads = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    if any(pads):
        inner = cv2.copyMakeBorder(inner, *pads, cv2.BORDER_REPLICATE)
    return inner
