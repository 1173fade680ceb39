"""Accuracy on white cells from another lab: BCCD's boxed white cells with a type label.

BCCD (another lab, microscope, camera and stain than PBC) ships boxes but no cell types. The
developers labelled 231 of its 372 boxed white cells from the image alone where the type was
plain to them (165 neutrophils, 37 eosinophils, 28 lymphocytes, 1 monocyte; the rest left out
as unsure): `bench/data/bccd_wbc_types.csv`. Those labels are not a haematologist's, and they
favour the easy cells; read the figures as a check of what a new microscope does to a model, not
as a clinical accuracy. Each cell is cut at its box (a tight crop, as a user of another lab would
hand it to `classify`) and framed by each model's own preprocessing.

    python bench/bench_bccd_types.py --models cbam_cnn cbam_cnn_lab cbam_cnn_int8 [--out FILE]

`--nucleus-window R [R ...]` also scores each model on windows of R times the nucleus extent
around each cell instead of its own framing (auto framing's window for a tight crop is 1.55):
how much of a model's result is the cell's size in its input. The labels themselves are then
what chooses R, so read those rows as a diagnosis, not as an accuracy.

Needs ../shared/data/bccd (the frames); the labels ship with the repository.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

import numpy as np
from bench_robustness import SHARED, Model, Predict, bccd_box_crops, cut_boxes, frame_raw

from edgehemo.framing import cell_window, window
from edgehemo.preprocess import opencv

LABELS = Path(__file__).resolve().parent / "data" / "bccd_wbc_types.csv"


def labelled_crops(bccd: Path, labels: Path = LABELS) -> tuple[list[np.ndarray], list[str]]:
    """The labelled cells cut at their boxes (BGR) and their type names."""
    with open(labels, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return cut_boxes(bccd, rows), [row["label"] for row in rows]


def around_nucleus(crop_bgr: np.ndarray, ratio: float, model: Model) -> np.ndarray:
    """`crop_bgr` framed by a window of `ratio` times its nucleus extent (RGB, the model's size);
    the model's own framing where no nucleus is found."""
    rgb = np.ascontiguousarray(crop_bgr[..., ::-1])
    box = cell_window(rgb, ratio)
    if box is None:
        return frame_raw(crop_bgr, model.spec)
    cv2, side = opencv(), model.spec.input_size
    return cv2.resize(window(rgb, box), (side, side), interpolation=cv2.INTER_AREA)


def score(model: Model, crops: list[np.ndarray], truth: list[str], classes: list[str],
          predict: Predict | None = None, ratio: float | None = None) -> dict:
    """Accuracy, per-class recall, balanced accuracy over `classes`, and the commonest calls;
    `ratio` frames each crop by a window of that many nucleus extents instead."""
    framed = np.stack([frame_raw(crop, model.spec) if ratio is None
                       else around_nucleus(crop, ratio, model) for crop in crops])
    predicted = [model.classes[i] for i in (predict or model.predict)(framed).argmax(1)]
    hits = np.array([p == t for p, t in zip(predicted, truth, strict=True)])
    recall = {name: float(hits[[t == name for t in truth]].mean()) for name in sorted(set(truth))}
    return {
        "accuracy": float(hits.mean()),
        "recall": recall,
        "balanced": float(np.mean([recall[n] for n in classes])),
        "predicted": Counter(predicted).most_common(3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--bccd", type=Path, default=SHARED / "bccd")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="also score each torch model after re-estimating its BatchNorm "
                             "statistics on all 372 boxed BCCD cells, labels unused "
                             "(what `edgehemo adapt` does with a site's crops)")
    parser.add_argument("--nucleus-window", type=float, nargs="+", default=[], metavar="R",
                        help="also score each model on windows of R nucleus extents")
    args = parser.parse_args()
    if any(ratio <= 0 for ratio in args.nucleus_window):
        parser.error("--nucleus-window: each R must be a positive number of nucleus extents")
    if not (args.bccd / "JPEGImages").is_dir():
        raise SystemExit(f"{args.bccd}: BCCD frames not found (see ../shared/data/README.md)")
    crops, truth = labelled_crops(args.bccd)
    counts = Counter(truth)
    classes = [n for n, _ in counts.most_common() if counts[n] >= 10]
    header = ["model", "framing", "accuracy", "balanced (classes with >= 10 cells)",
              *[f"{n} recall ({counts[n]})" for n in classes], "most predicted"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 3) + "---|"]
    baseline = counts.most_common(1)[0]
    site = bccd_box_crops(args.bccd) if args.adapt_bn else []
    for name in args.models:
        model = Model(name)
        runs = [(model.name, None, None)]
        if site:
            adapted = model.adapted(np.stack([frame_raw(crop, model.spec) for crop in site]))
            if adapted is not None:
                runs.append((f"{model.name} + BatchNorm re-estimated on BCCD", adapted, None))
        runs += [(model.name, None, ratio) for ratio in args.nucleus_window]
        for label, predict, ratio in runs:
            result = score(model, crops, truth, classes, predict, ratio)
            mix = ", ".join(f"{c} {n / len(truth):.0%}" for c, n in result["predicted"])
            framing = model.spec.framing if ratio is None else f"{ratio:g} x nucleus"
            cells = [label, framing, f"{result['accuracy']:.3f}",
                     f"{result['balanced']:.3f}",
                     *[f"{result['recall'][n]:.3f}" for n in classes], mix]
            lines.append("| " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    text = "\n".join([
        f"BCCD white cells with a developer's type label: {len(truth)} cells "
        f"({', '.join(f'{n} {c}' for n, c in counts.most_common())}); calling every cell "
        f"{baseline[0]} would score {baseline[1] / len(truth):.3f} accuracy, "
        f"{1 / len(classes):.3f} balanced.", "", *lines, ""])
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
