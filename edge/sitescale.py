"""One microscope's magnification, measured over many of its single-cell images at once.

A folder of crops handed to `classify` or `evaluate` usually comes from one microscope, so the
images share one scale. A single image measures it only where it shows a lone red cell, and a
tight crop around a white cell shows none; over many images:
- lone red cells, pooled (`edgehemo.ruler.pooled_diameter`), where there are enough of them;
- otherwise the white cells' nuclei: their median extent over the median on PBC's training
  fields, times PBC's red-cell diameter. A rough ruler (the median moves with the mix of cell
  types: lymphocytes' nuclei are small, monocytes' large) but one that tight crops still carry.
The framing then cuts every image at that scale (`crop_and_resize(..., red_cell)`), as the
capture daemon does once a session's red cells are measured.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from edgehemo.framing import locate_nucleus
from edgehemo.preprocess import PreprocessSpec
from edgehemo.ruler import PBC_RED_CELL_DIAMETER, red_cell_diameters

logger = logging.getLogger(__name__)

# Median nucleus extent (`edgehemo.framing.locate_nucleus`) of PBC's white cells, in pixels of
# its 360x363 fields (72.5 px red cells): 1,800 training images of the six white-cell classes of
# pbc_jpeg_subset (`python bench/bench_ruler.py` prints it).
PBC_NUCLEUS_EXTENT = 135.0
# Pooled lone red cells are trusted from this many; nuclei from this many images. Fewer, and each
# image is framed on its own.
MIN_POOLED_RED_CELLS = 20
MIN_POOLED_NUCLEI = 20


class SiteScale(NamedTuple):
    """A site's red-cell diameter in its images' pixels and what it was measured on."""

    red_cell: float | None  # None: too little to go on; frame each image on its own
    source: str  # "red cells", "nuclei" or "" (none)
    measured: int  # lone red cells, or nuclei, behind the figure
    images: int

    def describe(self) -> str:
        if self.red_cell is None:
            return (f"magnification not measurable over the {self.images} image(s) (fewer than "
                    f"{MIN_POOLED_RED_CELLS} lone red cells and {MIN_POOLED_NUCLEI} nuclei): "
                    "each image framed on its own")
        basis = (f"median of {self.measured} lone red cells" if self.source == "red cells" else
                 f"estimated from {self.measured} white-cell nuclei; too few lone red cells")
        return (f"magnification over {self.images} images: red cells {self.red_cell:.1f} px "
                f"({basis}), x{self.red_cell / PBC_RED_CELL_DIAMETER:.2f} the training images")


def site_scale(images: Iterable[np.ndarray]) -> SiteScale:
    """The red-cell diameter shared by `images` (RGB, raw single-cell images of one microscope)."""
    diameters: list[float] = []
    extents: list[float] = []
    count = 0
    for image in images:
        count += 1
        diameters += red_cell_diameters(image)
        if len(diameters) >= MIN_POOLED_RED_CELLS:
            continue  # the red cells will be the ruler: no nucleus is needed any more
        nucleus = locate_nucleus(image)
        if nucleus is not None:
            extents.append(nucleus.extent)
    if len(diameters) >= MIN_POOLED_RED_CELLS:
        return SiteScale(float(np.median(diameters)), "red cells", len(diameters), count)
    if len(extents) >= MIN_POOLED_NUCLEI:
        red_cell = PBC_RED_CELL_DIAMETER * float(np.median(extents)) / PBC_NUCLEUS_EXTENT
        return SiteScale(red_cell, "nuclei", len(extents), count)
    return SiteScale(None, "", 0, count)


def framing_scale(images: Iterable[np.ndarray], spec: PreprocessSpec) -> SiteScale | None:
    """The scale a folder of raw images is framed at under `spec`: `site_scale` over those not
    already framed at its input size, or None (nothing read) where `spec` does not frame with
    the ruler."""
    if spec.framing != "ruler":
        return None
    side = spec.input_size
    scale = site_scale(image for image in images if image.shape[:2] != (side, side))
    logger.info("%s", scale.describe())
    return scale
