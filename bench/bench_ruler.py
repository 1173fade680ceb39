"""How well red cells measure a field's magnification (edgehemo.ruler).

    python bench/bench_ruler.py [--pbc DIR] [--bccd DIR] [--out FILE]

- PBC's training fields: the pooled median lone red-cell diameter, the reference the shipped
  models' windows are expressed in (`edgehemo.ruler.PBC_RED_CELL_DIAMETER`), and its spread
  from field to field; and the median nucleus extent of its white cells, the reference of the
  nucleus ruler for tight crops (`edgehemo.sitescale.PBC_NUCLEUS_EXTENT`);
- PBC's validation fields rescaled by a known factor: the measured factor (does the ruler follow
  the magnification?);
- BCCD (another lab's 640x480 frames): its pooled diameter, how many frames have a lone red cell
  at all, and the per-frame figure against the median of BCCD's annotated red-cell boxes (boxes
  are drawn loosely and around overlapping cells, so they read larger); and what measuring costs
  per frame against the cell finder, in the same run.

Needs ../shared/data (pbc_jpeg_subset, bccd).
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from bench_robustness import SHARED, rescaled

from edgehemo.datasets import image_files
from edgehemo.device.cellfinder import CellFinder
from edgehemo.framing import locate_nucleus
from edgehemo.ruler import MIN_RED_CELLS, red_cell_diameters


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"{path}: not readable")
    return np.ascontiguousarray(image[..., ::-1])


def field_figures(images: list[np.ndarray]) -> tuple[float, list[float], int]:
    """Pooled median over every lone red cell, per-field medians (fields with enough cells),
    and the number of cells."""
    pooled, per_field = [], []
    for image in images:
        diameters = red_cell_diameters(image)
        pooled += diameters
        if len(diameters) >= MIN_RED_CELLS:
            per_field.append(float(np.median(diameters)))
    return float(np.median(pooled)), per_field, len(pooled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pbc", type=Path, default=SHARED / "pbc_jpeg_subset")
    parser.add_argument("--bccd", type=Path, default=SHARED / "bccd")
    parser.add_argument("--out", type=Path, help="also write the lines (markdown) here")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    lines = []

    train = [read_rgb(p) for d in sorted((args.pbc / "train").iterdir()) for p in image_files(d)]
    median, per_field, cells = field_figures(train)
    p10, p90 = np.percentile(per_field, [10, 90])
    lines.append(f"- PBC training fields: {len(train)} fields, {cells} lone red cells, pooled "
                 f"median diameter **{median:.1f} px**; {len(per_field)} fields with at least "
                 f"{MIN_RED_CELLS}, their own medians {p10:.1f}-{p90:.1f} px (10th-90th "
                 "percentile)")
    white = [read_rgb(p) for d in sorted((args.pbc / "train").iterdir())
             if d.name not in ("erythroblast", "platelet") for p in image_files(d)]
    extents = [n.extent for n in map(locate_nucleus, white) if n is not None]
    lines.append(f"- PBC training fields of white cells: {len(extents)} of {len(white)} with a "
                 f"nucleus found, median nucleus extent **{np.median(extents):.1f} px**")

    val = [read_rgb(p) for d in sorted((args.pbc / "val").iterdir()) for p in image_files(d)]
    base, _, _ = field_figures(val)
    for factor in (0.5, 0.7, 1.3):
        shifted = [np.ascontiguousarray(rescaled(factor)(image[..., ::-1])[..., ::-1])
                   for image in val]
        measured, _, cells = field_figures(shifted)
        lines.append(f"- PBC validation fields at x{factor}: measured x{measured / base:.3f} "
                     f"({cells} cells; unscaled {base:.1f} px)")

    if args.bccd.is_dir():
        with open(args.bccd / "boxes.csv", newline="") as handle:
            boxes = defaultdict(list)
            for row in csv.DictReader(handle):
                if row["label"] == "RBC":
                    boxes[row["image"]].append(max(int(row["xmax"]) - int(row["xmin"]),
                                                   int(row["ymax"]) - int(row["ymin"])))
        frames = sorted(p.name for p in (args.bccd / "JPEGImages").glob("*.jpg"))
        pooled, ratios, with_cells = [], [], 0
        for name in frames:
            diameters = red_cell_diameters(read_rgb(args.bccd / "JPEGImages" / name))
            pooled += diameters
            with_cells += bool(diameters)
            if diameters and boxes.get(name):
                ratios.append(np.median(diameters) / np.median(boxes[name]))
        r10, r50, r90 = np.percentile(ratios, [10, 50, 90])
        lines.append(f"- BCCD: {len(frames)} frames, {with_cells} with a lone red cell, "
                     f"{len(pooled)} cells, pooled median diameter **{np.median(pooled):.1f} px** "
                     f"(x{np.median(pooled) / median:.3f} PBC's); per frame / median annotated "
                     f"red-cell box {r50:.2f} ({r10:.2f}-{r90:.2f})")
        frames_bgr = [cv2.imread(str(args.bccd / "JPEGImages" / name)) for name in frames[:100]]
        finder = CellFinder()
        ruler_ms, finder_ms = [], []
        for _ in range(3):  # alternating rounds: the machine's noise hits both alike
            start = time.perf_counter()
            for frame in frames_bgr:
                red_cell_diameters(np.ascontiguousarray(frame[..., ::-1]))
            ruler_ms.append((time.perf_counter() - start) * 1000 / len(frames_bgr))
            start = time.perf_counter()
            for frame in frames_bgr:
                finder.find(frame)
            finder_ms.append((time.perf_counter() - start) * 1000 / len(frames_bgr))
        ruler, found = float(np.median(ruler_ms)), float(np.median(finder_ms))
        lines.append(f"- cost, 1 thread, 100 BCCD frames (640x480), median of 3 rounds: measuring "
                     f"a frame's red cells {ruler:.2f} ms, the cell finder {found:.2f} ms "
                     f"(x{ruler / found:.1f}); a session measures only until its figure is fixed")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
