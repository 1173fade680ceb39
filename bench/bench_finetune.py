"""Site calibration, measured: fine-tune on 20 labelled crops per class from a "new site", then
compare accuracy on that site and on the shared test split, before and after.

    python bench/bench_finetune.py --model runs/x/best.pt --per-class 20

The new site is the PBC validation images (pbc_jpeg_subset/val, 50 per class) re-stained to the
colours of another lab (BCCD, Reinhard transfer: the hardest shift of bench_robustness.py), or
with `--site bccd` another lab's own cells: BCCD's white cells with a developer's type label
(bench/data/bccd_wbc_types.csv; the classes with more than `--per-class` cells), cut at their
boxes or, with `--ruler`, from their frames as the capture daemon saves them on a site whose red
cells it has measured.
`--per-class` of them per class are the site's labelled crops; the others score the site
(accuracy, and balanced accuracy: the mean of the per-class recalls). The
fine-tune is the real command: `edgehemo train MODEL --finetune --data SITE --replay NPZ`.
With `--adapt-bn` the model's BatchNorm statistics are first re-estimated from all the site's
images without their labels (`edgehemo adapt`), and the fine-tune starts from that.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from bench_bccd_types import labelled_crops, labelled_rows, ruler_cuts, site_red_cell
from bench_robustness import (
    SHARED,
    Model,
    bccd_frames,
    frame_set,
    lab_stats,
    load_val,
    reinhard,
    views_mean,
)

from edgehemo.datasets import load_dataset
from edgehemo.device.cellfinder import CellFinder, cut_crops
from edgehemo.ruler import pbc_window_side
from edgehemo.views import resolve_views


def predictions(model: Model, framed: np.ndarray, tta: str) -> np.ndarray:
    """Predicted classes, averaged over the test-time views `tta` names (none, mirror, stain)."""
    if tta == "none":
        return model.predict(framed).argmax(1)
    return views_mean(model.predict, framed, tta).argmax(1)


def site_accuracy(model: Model, images: list[np.ndarray], labels: np.ndarray,
                  tta: str = "none") -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean per-class recall) on the site's held-out crops,
    framed as `classify` frames a folder of them (at the magnification measured over all)."""
    framed, _ = frame_set(images, model.spec)
    hits = predictions(model, framed, tta) == labels
    return float(hits.mean()), float(np.mean([hits[labels == c].mean() for c in set(labels)]))


def restained_site() -> tuple[list[np.ndarray], np.ndarray, list[str], str]:
    images, labels, classes = load_val(SHARED / "pbc_jpeg_subset")
    frames = bccd_frames(SHARED / "bccd")
    finder = CellFinder()
    colours = lab_stats([c[..., ::-1] for f in frames for c in cut_crops(f, finder.find(f), 200)])
    return ([reinhard(im, colours) for im in images], labels, classes,
            "PBC val re-stained to BCCD colours")


def bccd_site(classes: list[str], per_class: int, ruler_crop_fraction: float | None = None
              ) -> tuple[list[np.ndarray], np.ndarray, list[str], str]:
    """The labelled BCCD cells cut at their boxes, or, with `ruler_crop_fraction`, cut from
    their frames as the capture daemon saves them on a site of measured magnification: a field
    whose centre `ruler_crop_fraction` is the model's training window in red-cell diameters."""
    bccd = SHARED / "bccd"
    if ruler_crop_fraction is None:
        crops, names = labelled_crops(bccd)
        cut = "cut at their boxes"
    else:
        rows = labelled_rows()
        red_cell, _ = site_red_cell(bccd)
        side = pbc_window_side(ruler_crop_fraction, red_cell) / ruler_crop_fraction
        crops, names = ruler_cuts(bccd, rows, side), [row["label"] for row in rows]
        cut = f"cut from the frames at the site's red-cell size ({red_cell:.1f} px)"
    kept = {n for n in set(names) if names.count(n) > per_class}
    pairs = [(crop, classes.index(n)) for crop, n in zip(crops, names, strict=True) if n in kept]
    return ([c for c, _ in pairs], np.array([label for _, label in pairs]), classes,
            f"BCCD cells labelled by the developers ({', '.join(sorted(kept))}), {cut}")


def test_accuracy(model: Model, npz: Path, tta: str = "none") -> float:
    test = load_dataset(npz, "test", model.spec)
    return float((predictions(model, test.images, tta) == test.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="trained weights: name or best.pt")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0,
                        help="draws the labelled crops and seeds the fine-tune")
    parser.add_argument("--npz", type=Path, default=SHARED / "pbc_bloodmnist_like_64.npz")
    parser.add_argument("--out", type=Path, help="keep the fine-tuned run here")
    parser.add_argument("--site", choices=("restained", "bccd"), default="restained",
                        help="restained: PBC val re-stained to BCCD colours; bccd: BCCD's "
                             "white cells with a developer's type label")
    parser.add_argument("--ruler", action="store_true",
                        help="with --site bccd: the cells cut from their frames as the capture "
                             "daemon saves them at the site's measured red-cell size, instead "
                             "of at their boxes")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="re-estimate BatchNorm on the unlabelled site images first")
    parser.add_argument("--tta", action="store_true",
                        help="also score each model with its mirror images averaged "
                             "(classify --tta)")
    parser.add_argument("--stain-tta", action="store_true",
                        help="also score each model with eight stain hues averaged "
                             "(classify --stain-tta, capture's default)")
    args = parser.parse_args()
    before = Model(args.model)
    if args.ruler and args.site != "bccd":
        parser.error("--ruler needs --site bccd")
    if args.site == "bccd":
        site, labels, classes, described = bccd_site(
            list(before.classes), args.per_class,
            before.spec.crop_fraction if args.ruler else None)
    else:
        site, labels, classes, described = restained_site()
    rng = np.random.default_rng(args.seed)
    labelled = np.zeros(len(site), dtype=bool)
    for label in sorted(set(labels)):
        members = rng.permutation(np.flatnonzero(labels == label))
        labelled[members[: args.per_class]] = True
    held = [im for im, keep in zip(site, labelled, strict=True) if not keep]
    held_labels = labels[~labelled]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        for index in np.flatnonzero(labelled):
            target = folder / classes[labels[index]] / f"{index:04d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), site[index])
        out = args.out or Path(tmp) / "run"
        start = args.model
        if args.adapt_bn:
            unlabelled = Path(tmp) / "unlabelled"
            unlabelled.mkdir()
            for index, image in enumerate(site):
                cv2.imwrite(str(unlabelled / f"{index:04d}.jpg"), image)
            start = str(Path(tmp) / "adapted" / "best.pt")
            subprocess.run([sys.executable, "-m", "edgehemo.cli", "adapt", args.model, "--data",
                            str(unlabelled), "--out", str(Path(start).parent)], check=True)
        command = [sys.executable, "-m", "edgehemo.cli", "train", start, "--finetune",
                   "--data", str(folder), "--replay", str(args.npz), "--epochs",
                   str(args.epochs), "--out", str(out), "--threads", "2",
                   "--seed", str(args.seed)]
        print(" ".join(command[2:]))
        subprocess.run(command, check=True)
        after = Model(str(out / "best.pt"))
        rows = [("before", before)]
        if args.adapt_bn:
            rows.append(("BatchNorm re-estimated (no labels)", Model(start)))
        rows.append(("after fine-tuning", after))
        print(f"\nsite: {described}; {args.per_class} labelled crops per "
              f"class (draw and fine-tune seed {args.seed}) for fine-tuning, {len(held)} "
              "held-out crops to score\n")
        print("| model | site accuracy (held out) | site balanced accuracy "
              "| shared test accuracy |")
        print("|---|---:|---:|---:|")
        views = {"none": "", "mirror": ", mirror images averaged",
                 "stain": ", eight stain hues averaged"}
        modes = ["none", *(["mirror"] if args.tta else []), *(["stain"] if args.stain_tta else [])]
        for name, model in rows:
            for tta in modes:
                resolve_views(tta, model.spec.test_views, model.name)  # stain: trained for it
                accuracy, balanced = site_accuracy(model, held, held_labels, tta)
                label = name + views[tta]
                print(f"| {label} | {accuracy:.4f} | {balanced:.4f} | "
                      f"{test_accuracy(model, args.npz, tta):.4f} |")


if __name__ == "__main__":
    main()
