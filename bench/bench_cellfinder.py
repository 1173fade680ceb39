"""Cell finder against the BCCD white-cell boxes: recall/precision at IoU>=0.5 and ms per frame.

    python bench/bench_cellfinder.py                 # defaults, trainval and test
    python bench/bench_cellfinder.py --tune          # grid search on trainval, then test
    python bench/bench_cellfinder.py --pbc ../shared/data/pbc_jpeg_subset   # crop_scale check

Tuning reads only the trainval list; the test list is scored once with the chosen settings.
Timing runs OpenCV on one thread over the frames already decoded.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from edgehemo.device.cellfinder import CellFinder, CellFinderSettings, box_iou

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd"


def load(root: Path):
    boxes = defaultdict(list)
    with open(root / "boxes.csv") as handle:
        for row in csv.DictReader(handle):
            if row["label"] == "WBC":
                boxes[row["image"].removesuffix(".jpg")].append(
                    tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
                )
    splits = {
        name: (root / "ImageSets" / "Main" / f"{name}.txt").read_text().split()
        for name in ("trainval", "test")
    }
    frames = {
        image_id: cv2.imread(str(root / "JPEGImages" / f"{image_id}.jpg"))
        for image_id in splits["trainval"] + splits["test"]
    }
    return boxes, splits, frames


def score(finder: CellFinder, ids, boxes, frames):
    """Greedy matching per frame; returns recall, precision and the misses/false alarms."""
    tp = fp = fn = 0
    misses, false_alarms = [], []
    for image_id in ids:
        found = [cell.box for cell in finder.find(frames[image_id])]
        truth = boxes[image_id]
        used: set[int] = set()
        for box in found:
            best = max(
                ((box_iou(box, t), j) for j, t in enumerate(truth) if j not in used),
                default=(0.0, -1),
            )
            if best[0] >= 0.5:
                tp += 1
                used.add(best[1])
            else:
                fp += 1
                false_alarms.append((image_id, box, round(best[0], 2)))
        for j, t in enumerate(truth):
            if j not in used:
                fn += 1
                best = max((box_iou(box, t) for box in found), default=0.0)
                misses.append((image_id, t, round(best, 2)))
    recall = tp / max(1, tp + fn)
    precision = tp / max(1, tp + fp)
    return recall, precision, misses, false_alarms


def time_per_frame(finder: CellFinder, frames: list[np.ndarray], repeats: int = 3) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for frame in frames:
            finder.find(frame)
        runs.append((time.perf_counter() - start) * 1000 / len(frames))
    return min(runs)


def tune(ids, boxes, frames) -> CellFinderSettings:
    grid = {
        "stain_threshold": [50, 60, 70, 80],
        "close_px": [7, 9, 11],
        "min_area_px": [2000, 3000, 4000],
        "box_scale": [1.2, 1.3, 1.4],
    }
    best = None
    for values in itertools.product(*grid.values()):
        settings = CellFinderSettings(**dict(zip(grid, values, strict=True)))
        recall, precision, _, _ = score(CellFinder(settings), ids, boxes, frames)
        key = (recall + precision, recall)
        if best is None or key > best[0]:
            best = (key, settings)
    return best[1]


def pbc_crop_scale(root: Path, finder: CellFinder, every: int = 5) -> None:
    """Nucleus extent the finder sees on PBC training images: the training window is 200 px."""
    extents = []
    files = sorted(root.glob("train/*/*.jpg"))[::every]
    for path in files:
        image = cv2.imread(str(path))
        cells = finder.find(image)
        if not cells:
            continue
        centre = np.array(image.shape[1::-1]) / 2
        cell = min(cells, key=lambda c: np.abs(np.array(c.center) - centre).sum())
        extents.append(max(cell.crop[2] - cell.crop[0], cell.crop[3] - cell.crop[1])
                       / finder.settings.crop_scale)
    median = statistics.median(extents)
    print(f"PBC train ({len(files)} images, nucleus found in {len(extents)}): median nucleus "
          f"extent {median:.0f} px -> crop_scale for a 200 px window = {200 / median:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", type=Path, default=BCCD)
    parser.add_argument("--tune", action="store_true", help="grid search on trainval first")
    parser.add_argument("--pbc", type=Path, help="pbc_jpeg_subset folder: check crop_scale")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--drop-edge-cells", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    boxes, splits, frames = load(args.bccd)
    settings = tune(splits["trainval"], boxes, frames) if args.tune else CellFinderSettings(
        drop_edge_cells=args.drop_edge_cells)
    finder = CellFinder(settings)
    print(f"settings: {settings.model_dump()}")
    print("| split | frames | WBC boxes | recall | precision | ms/frame (1 thread) |")
    print("|---|---:|---:|---:|---:|---:|")
    for split in ("trainval", "test"):
        ids = splits[split]
        recall, precision, misses, false_alarms = score(finder, ids, boxes, frames)
        ms = time_per_frame(finder, [frames[i] for i in ids])
        n_boxes = sum(len(boxes[i]) for i in ids)
        print(f"| {split} | {len(ids)} | {n_boxes} | {recall:.3f} | {precision:.3f} | {ms:.2f} |")
        if split == "test" or args.show_misses:
            for image_id, box, best in misses:
                print(f"  {split} miss: {image_id} WBC {box} (best IoU of a detection {best})")
            for image_id, box, best in false_alarms:
                print(f"  {split} false alarm: {image_id} {box} (best IoU with a WBC {best})")
    if args.pbc:
        pbc_crop_scale(args.pbc, finder)


if __name__ == "__main__":
    main()
