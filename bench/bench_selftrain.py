"""Self-training on another lab's unlabelled crops, measured on cells it did not learn from.

`edgehemo adapt MODEL --method self-train --data SITE --replay NPZ` fine-tunes a model on its
own confident answers for a site's unlabelled crops. Scored on the same crops, the figure would
flatter it (it has seen those images), so BCCD's frames are split in two by their order (even
and odd): the model adapts on the box crops of one half's white cells, labels unused, and is
scored on the developers' labelled cells (bench/data/bccd_wbc_types.csv) of the other half; then
the halves swap, and each labelled cell is scored once. Scored as a folder of box crops (as
classify and evaluate frame one, the answers averaged over the model's views) and as the capture
daemon cuts cells from the frames (`nucleated_cells` answers); beside the model before, on the
same cells, and the shared test split after (one view and the model's views).

    python bench/bench_selftrain.py --model cbam_cnn [--seed 0] [--views auto|mirror] [--out FILE]

`--views mirror` labels and scores with the mirror images instead of the model's stain hues
(whose kind was chosen on BCCD's cells, docs/robustness.md): how much of the gain is theirs.

Needs ../shared/data/bccd and the shared npz (replayed, and the test split); torch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from bench_bccd_types import labelled_rows, ruler_framed, site_red_cell
from bench_finetune import test_accuracy
from bench_robustness import SHARED, Model, box_rows, cut_boxes, frame_set, views_mean

from edgehemo.classes import answer_classes, restricted
from edgehemo.train.selftrain import self_train_checkpoint
from edgehemo.views import resolve_views


def answers(model: Model, framed: np.ndarray, classes: str | None = None,
            views: str = "auto") -> list[str]:
    """The model's answers averaged over `views` (auto: its own), optionally restricted."""
    views = resolve_views(views, model.spec.test_views, model.name)
    probabilities = views_mean(model.predict, framed, views) if views != "none" else (
        model.predict(framed))
    if classes is not None:
        probabilities = restricted(probabilities, answer_classes(classes, model.classes))
    return [model.classes[i] for i in probabilities.argmax(1)]


def score(model: Model, rows: list[dict[str, str]], bccd: Path, red_cell: float,
          views: str = "auto") -> tuple[list[bool], list[bool]]:
    """Hits on `rows`' cells as box crops of one folder (all classes) and as capture cuts them
    from the frames (no platelet answer)."""
    truth = [row["label"] for row in rows]
    boxes, _ = frame_set(cut_boxes(bccd, rows), model.spec)
    frames = ruler_framed(bccd, rows, red_cell, model)
    return ([a == t for a, t in zip(answers(model, boxes, views=views), truth, strict=True)],
            [a == t for a, t in zip(answers(model, frames, "nucleated_cells", views), truth,
                                    strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cbam_cnn")
    parser.add_argument("--bccd", type=Path, default=SHARED / "bccd")
    parser.add_argument("--npz", type=Path, default=SHARED / "pbc_bloodmnist_like_64.npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--views", default="auto",
                        help="test-time views of the pseudo-labels and of the scoring (auto: "
                             "the model's own; mirror: without the stain hues)")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    if not (args.bccd / "JPEGImages").is_dir():
        raise SystemExit(f"{args.bccd}: BCCD frames not found (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    frames = sorted({row["image"] for row in box_rows(args.bccd)})
    half = {name: index % 2 for index, name in enumerate(frames)}
    red_cell, _ = site_red_cell(args.bccd)
    before = Model(args.model)
    hits: dict[str, list[bool]] = {key: [] for key in ("before boxes", "before frames",
                                                       "after boxes", "after frames")}
    tests = []
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for fold in (0, 1):
            site = Path(tmp) / f"site{fold}"
            site.mkdir()
            learn = [row for row in box_rows(args.bccd) if half[row["image"]] == fold]
            for index, crop in enumerate(cut_boxes(args.bccd, learn)):
                cv2.imwrite(str(site / f"{index:04d}.png"), crop)
            checkpoint, card = self_train_checkpoint(
                args.model, site, Path(tmp) / f"run{fold}", args.npz, seed=args.seed,
                views=args.views, threads=args.threads)
            record = card.data["self_trained"]
            held = [row for row in labelled_rows() if half[row["image"]] != fold]
            after = Model(str(checkpoint))
            for name, model in (("before", before), ("after", after)):
                boxes, cut = score(model, held, args.bccd, red_cell, args.views)
                hits[f"{name} boxes"] += boxes
                hits[f"{name} frames"] += cut
            views = resolve_views(args.views, after.spec.test_views)
            tests.append((test_accuracy(after, args.npz), test_accuracy(after, args.npz, views)))
            lines.append(f"- half {fold}: learned from {record['kept']} of {record['images']} "
                         "box crops (" + ", ".join(f"{k} {v}" for k, v in
                                                   record["counts"].items())
                         + f"), scored on {len(held)} labelled cells of the other half")
    views = resolve_views(args.views, before.spec.test_views)
    base = (test_accuracy(before, args.npz), test_accuracy(before, args.npz, views))
    table = [
        f"Self-training on BCCD's unlabelled box crops, scored on the other half of its frames "
        f"({len(hits['after boxes'])} labelled cells, each once; model {args.model}, seed "
        f"{args.seed}; pseudo-labels and answers averaged over the views {views}).",
        "", *lines, "",
        "| model | box crops as one folder (all classes) | cut from the frames as capture cuts "
        f"(no platelet) | shared test split, one view / {views} views |",
        "|---|---:|---:|---:|",
        f"| {args.model} | {np.mean(hits['before boxes']):.3f} | "
        f"{np.mean(hits['before frames']):.3f} | {base[0]:.4f} / {base[1]:.4f} |",
        f"| self-trained | {np.mean(hits['after boxes']):.3f} | "
        f"{np.mean(hits['after frames']):.3f} | "
        + "; ".join(f"half {fold}: {one:.4f} / {averaged:.4f}"
                    for fold, (one, averaged) in enumerate(tests)) + " |",
    ]
    text = "\n".join(table)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
