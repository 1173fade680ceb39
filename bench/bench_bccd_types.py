"""Accuracy on white cells from another lab: BCCD's boxed white cells with a type label.

BCCD (another lab, microscope, camera and stain than PBC) ships boxes but no cell types. The
developers labelled 231 of its 372 boxed white cells from the image alone where the type was
plain to them (165 neutrophils, 37 eosinophils, 28 lymphocytes, 1 monocyte; the rest left out
as unsure): `bench/data/bccd_wbc_types.csv`. Those labels are not a haematologist's, and they
favour the easy cells; read the figures as a check of what a new microscope does to a model, not
as a clinical accuracy. Each cell is cut at its box (a tight crop, as a user of another lab would
hand it to `classify`) and framed by each model's own preprocessing: for ruler framing, as
`classify` and `evaluate` frame a folder, at the magnification measured over all 231 crops
(`edgehemo.sitescale`: tight crops show too few lone red cells, so their nuclei give it);
`--each-image` frames each crop on its own instead (`classify --each-image`).

    python bench/bench_bccd_types.py --models cbam_cnn cbam_cnn_lab cbam_cnn_int8 [--out FILE]

`--nucleus-window R [R ...]` also scores each model on windows of R times the nucleus extent
around each cell instead of its own framing (auto framing's window for a tight crop is 1.55):
how much of a model's result is the cell's size in its input. The labels themselves are then
what chooses R, so read those rows as a diagnosis, not as an accuracy.

`--ruler` also scores each model as the capture daemon frames cells on a site with a known
magnification: each cell cut from its frame by a window of as many red-cell diameters as the
model's training window (edgehemo.ruler), BCCD's red-cell diameter pooled over all its frames
(no label used; the frames' lone red cells are the ruler); and, for models that frame with the
ruler, the box crops with that diameter given, as `classify --red-cell-px` frames them.

`--classes white_cells` scores the answers as `classify --classes white_cells` gives them: the
cells are known to be white cells (cut at BCCD's white-cell boxes), so platelet and nucleated red
cell are not an answer (any comma-separated class names may be given instead).

`--tta` averages each cell and its three mirror images, as `classify --tta` does;
`--stain-tta` each cell under eight stain hues (`edgehemo.views`), as `classify --stain-tta` and
capture by default do.

`--write-folder DIR` writes the labelled box crops as an ImageFolder instead (lossless PNG,
BCCD's own upper-case class names), so the command line scores them as a user would:
`edgehemo evaluate --model cbam_cnn_int8 --data DIR [--views none]`.

Needs ../shared/data/bccd (the frames); the labels ship with the repository.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

import numpy as np
from bench_robustness import (
    SHARED,
    Model,
    Predict,
    bccd_box_crops,
    bccd_frames,
    box_rows,
    cut_boxes,
    frame_raw,
    frame_set,
    views_mean,
)

from edgehemo.classes import answer_classes, restricted
from edgehemo.framing import cell_window, locate_nucleus, window
from edgehemo.preprocess import crop_and_resize, opencv
from edgehemo.ruler import pbc_window_side, pooled_diameter
from edgehemo.views import resolve_views

LABELS = Path(__file__).resolve().parent / "data" / "bccd_wbc_types.csv"


def labelled_rows(labels: Path = LABELS) -> list[dict[str, str]]:
    with open(labels, newline="") as handle:
        return list(csv.DictReader(handle))


def labelled_crops(bccd: Path, labels: Path = LABELS) -> tuple[list[np.ndarray], list[str]]:
    """The labelled cells cut at their boxes (BGR) and their type names."""
    rows = labelled_rows(labels)
    return cut_boxes(bccd, rows), [row["label"] for row in rows]


def site_red_cell(bccd: Path) -> tuple[float, int]:
    """BCCD's red-cell diameter pooled over all its frames (as a capture session pools them)."""
    red_cell, measured, _, _ = pooled_diameter(
        np.ascontiguousarray(frame[..., ::-1]) for frame in bccd_frames(bccd))
    if red_cell is None:
        raise SystemExit(f"{bccd}: no lone red cell in BCCD's frames")
    return red_cell, measured


def ruler_cuts(bccd: Path, rows: list[dict[str, str]], side: float) -> list[np.ndarray]:
    """Each row's cell cut from its frame (BGR) by a square of `side` pixels centred on the
    nucleus found in its box (the box centre where none is)."""
    frames: dict[str, np.ndarray] = {}
    out = []
    for row in rows:
        if row["image"] not in frames:
            frame = opencv().imread(str(bccd / "JPEGImages" / row["image"]))
            if frame is None:
                raise FileNotFoundError(f"{bccd / 'JPEGImages' / row['image']}: not readable")
            frames[row["image"]] = frame
        frame = frames[row["image"]]
        x0, y0, x1, y1 = (int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        nucleus = locate_nucleus(np.ascontiguousarray(frame[y0:y1, x0:x1, ::-1]))
        cx, cy = ((x0 + x1) / 2, (y0 + y1) / 2) if nucleus is None else (
            x0 + nucleus.cx, y0 + nucleus.cy)
        size = round(side)
        left, top = round(cx - size / 2), round(cy - size / 2)
        out.append(window(frame, (left, top, left + size, top + size)))
    return out


def ruler_framed(bccd: Path, rows: list[dict[str, str]], red_cell: float,
                 model: Model) -> np.ndarray:
    """Each row's cell as the capture daemon frames it on a site whose red cells measure
    `red_cell`: the model's training window in red-cell diameters, cut from the frame around
    the nucleus (RGB, the model's size)."""
    cv2, size = opencv(), model.spec.input_size
    cuts = ruler_cuts(bccd, rows, pbc_window_side(model.spec.crop_fraction, red_cell))
    return np.stack([cv2.resize(np.ascontiguousarray(cut[..., ::-1]), (size, size),
                                interpolation=cv2.INTER_AREA) for cut in cuts])


def around_nucleus(crop_bgr: np.ndarray, ratio: float, model: Model) -> np.ndarray:
    """`crop_bgr` framed by a window of `ratio` times its nucleus extent (RGB, the model's size);
    the model's own framing where no nucleus is found."""
    rgb = np.ascontiguousarray(crop_bgr[..., ::-1])
    box = cell_window(rgb, ratio)
    if box is None:
        return frame_raw(crop_bgr, model.spec)
    cv2, side = opencv(), model.spec.input_size
    return cv2.resize(window(rgb, box), (side, side), interpolation=cv2.INTER_AREA)


def framed_crops(model: Model, crops: list[np.ndarray], ratio: float | None = None,
                 each_image: bool = False) -> tuple[np.ndarray, str]:
    """The crops framed by the model's own preprocessing (as `classify` frames a folder, or
    with `each_image` each crop on its own), or by a window of `ratio` nucleus extents; and
    the framing's description."""
    if ratio is not None:
        framed = np.stack([around_nucleus(crop, ratio, model) for crop in crops])
        return framed, f"{ratio:g} x nucleus"
    framed, scale = frame_set(crops, model.spec, each_image)
    if scale is None:
        return framed, model.spec.framing + (", each crop on its own" if each_image else "")
    if scale.red_cell is None:
        return framed, f"{model.spec.framing} (no magnification over the crops)"
    return framed, (f"{model.spec.framing} ({scale.red_cell:.1f} px red cells, from the crops' "
                    f"{scale.source})")


def score(model: Model, framed: np.ndarray, truth: list[str], classes: list[str],
          predict: Predict | None = None, allowed: tuple[int, ...] | None = None,
          tta: str = "none") -> dict:
    """Accuracy, per-class recall, balanced accuracy over `classes`, and the commonest calls;
    `allowed`: the only classes an answer may name; `tta`: the test-time views averaged
    (`edgehemo.views`)."""
    predict = predict or model.predict
    probabilities = views_mean(predict, framed, tta) if tta != "none" else predict(framed)
    if allowed is not None:
        probabilities = restricted(probabilities, allowed)
    predicted = [model.classes[i] for i in probabilities.argmax(1)]
    hits = np.array([p == t for p, t in zip(predicted, truth, strict=True)])
    recall = {name: float(hits[[t == name for t in truth]].mean()) for name in sorted(set(truth))}
    return {
        "accuracy": float(hits.mean()),
        "recall": recall,
        "balanced": float(np.mean([recall[n] for n in classes])),
        "predicted": Counter(predicted).most_common(3),
    }


def write_folder(root: Path, crops: list[np.ndarray], truth: list[str]) -> None:
    """The labelled box crops as PNG files in `root`/<LABEL>/, BCCD's upper-case class names."""
    cv2 = opencv()
    for index, (crop, label) in enumerate(zip(crops, truth, strict=True)):
        folder = root / label.upper()
        folder.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(folder / f"{index:03d}.png"), crop):
            raise SystemExit(f"{folder}: could not write {index:03d}.png")
    print(f"{len(crops)} crops written to {root} ({', '.join(sorted(set(truth)))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--write-folder", type=Path, metavar="DIR",
                        help="instead, write the labelled box crops as lossless PNG into "
                             "DIR/<BCCD's label>/ (an ImageFolder in another lab's names, for "
                             "`edgehemo evaluate --data DIR` and `edgehemo classify`)")
    parser.add_argument("--bccd", type=Path, default=SHARED / "bccd")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="also score each torch model after re-estimating its BatchNorm "
                             "statistics on all 372 boxed BCCD cells, labels unused "
                             "(what `edgehemo adapt` does with a site's crops); with --ruler "
                             "also on those cells cut by the ruler")
    parser.add_argument("--nucleus-window", type=float, nargs="+", default=[], metavar="R",
                        help="also score each model on windows of R nucleus extents")
    parser.add_argument("--ruler", action="store_true",
                        help="also score each model on windows cut from the frames at BCCD's "
                             "magnification measured by its red cells (the capture's framing)")
    parser.add_argument("--classes", help="the only classes an answer may name, as "
                        "`classify --classes` takes them (e.g. white_cells)")
    parser.add_argument("--each-image", action="store_true",
                        help="frame each box crop at its own magnification (classify "
                             "--each-image), not the one measured over all the crops")
    parser.add_argument("--tta", action="store_true",
                        help="average each cell and its mirror images (classify --tta)")
    parser.add_argument("--stain-tta", action="store_true",
                        help="average each cell under eight stain hues (classify --stain-tta)")
    args = parser.parse_args()
    if any(ratio <= 0 for ratio in args.nucleus_window):
        parser.error("--nucleus-window: each R must be a positive number of nucleus extents")
    if not (args.bccd / "JPEGImages").is_dir():
        raise SystemExit(f"{args.bccd}: BCCD frames not found (see ../shared/data/README.md)")
    tta = "stain" if args.stain_tta else "mirror" if args.tta else "none"
    crops, truth = labelled_crops(args.bccd)
    if args.write_folder is not None:
        write_folder(args.write_folder, crops, truth)
        return
    if not args.models:
        parser.error("--models is required (unless --write-folder)")
    counts = Counter(truth)
    classes = [n for n, _ in counts.most_common() if counts[n] >= 10]
    header = ["model", "framing", "accuracy", "balanced (classes with >= 10 cells)",
              *[f"{n} recall ({counts[n]})" for n in classes], "most predicted"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 3) + "---|"]
    baseline = counts.most_common(1)[0]
    site = bccd_box_crops(args.bccd) if args.adapt_bn else []
    white_rows = box_rows(args.bccd) if args.adapt_bn and args.ruler else []
    red_cell = None
    if args.ruler:
        red_cell, measured = site_red_cell(args.bccd)
        print(f"BCCD red-cell diameter: {red_cell:.1f} px (median of {measured} lone red cells)")
    for name in args.models:
        model = Model(name)
        resolve_views(tta, model.spec.test_views, model.name)  # stain: only if trained for it
        allowed = None if args.classes is None else answer_classes(args.classes, model.classes)
        runs = [(model.name, None, None)]
        if site:
            adapted = model.adapted(frame_set(site, model.spec, args.each_image)[0])
            if adapted is not None:
                runs.append((f"{model.name} + BatchNorm re-estimated on BCCD", adapted, None))
        runs += [(model.name, None, ratio) for ratio in args.nucleus_window]
        if red_cell is not None:
            runs.append((model.name, None, "ruler"))
            if model.spec.framing == "ruler":
                runs.append((model.name, None, "ruler-boxes"))
            if args.adapt_bn:
                adapted = model.adapted(ruler_framed(args.bccd, white_rows, red_cell, model))
                if adapted is not None:
                    runs.append((f"{model.name} + BatchNorm re-estimated on BCCD", adapted,
                                 "ruler"))
        for label, predict, ratio in runs:
            if ratio == "ruler":
                framed = ruler_framed(args.bccd, labelled_rows(), red_cell, model)
                framing = f"ruler ({red_cell:.1f} px red cells, from the frames)"
            elif ratio == "ruler-boxes":  # `classify --red-cell-px` on the box crops
                framed = np.stack([crop_and_resize(np.ascontiguousarray(crop[..., ::-1]),
                                                   model.spec, red_cell) for crop in crops])
                framing = f"ruler ({red_cell:.1f} px red cells given, box crops)"
            else:
                framed, framing = framed_crops(model, crops, ratio, args.each_image)
            result = score(model, framed, truth, classes, predict, allowed, tta)
            mix = ", ".join(f"{c} {n / len(truth):.0%}" for c, n in result["predicted"])
            cells = [label, framing, f"{result['accuracy']:.3f}",
                     f"{result['balanced']:.3f}",
                     *[f"{result['recall'][n]:.3f}" for n in classes], mix]
            lines.append("| " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    text = "\n".join([
        f"BCCD white cells with a developer's type label: {len(truth)} cells "
        f"({', '.join(f'{n} {c}' for n, c in counts.most_common())}); calling every cell "
        f"{baseline[0]} would score {baseline[1] / len(truth):.3f} accuracy, "
        f"{1 / len(classes):.3f} balanced."
        + (f" Answers restricted to --classes {args.classes}." if args.classes else "")
        + {"none": "", "mirror": " Each cell and its mirror images averaged (--tta).",
           "stain": " Each cell under eight stain hues averaged (--stain-tta)."}[tta],
        "", *lines, ""])
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
