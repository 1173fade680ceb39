"""The images that several trained models all get wrong: where a single model's accuracy stops.

Each model (a shipped name or a checkpoint with its card) classifies one split, one view, as
`edgehemo evaluate --views none` does; the script prints how many images 0, 1, ... all of the
models miss, the accuracy a perfect choice among their answers would reach, that of their
averaged probabilities (an ensemble), and the pairs
(true -> answered) of the images every model misses, and with `--sheet` draws those images with
their labels for a haematologist to check (a wrong or ambiguous label cannot be learned away).
Run it on the validation split: the test split stays for final figures.

    python scripts/shared_errors.py --data ../shared/data/pbc_bloodmnist_like_64.npz \\
        --split val --models cbam_cnn_lab cbam_cnn se_cnn sa_cnn --sheet /tmp/shared_errors.png
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from edgehemo.datasets import align_classes, load_dataset
from edgehemo.models import resolve_weights
from edgehemo.train.data import predict_probabilities
from edgehemo.train.evaluate import load_model


def probabilities(names: list[str], data: Path, split: str) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Each model's probabilities (models x images x classes), the labels, the images and the
    class names."""
    predictions, dataset = [], None
    for name in names:
        weights = resolve_weights(name)
        model = load_model(weights.checkpoint, weights.card)
        split_data = align_classes(load_dataset(data, split, weights.card.preprocessing),
                                   weights.card.classes)
        if dataset is not None and not np.array_equal(split_data.labels, dataset.labels):
            raise ValueError(f"{name} reads {data} [{split}] in another order or framing")
        dataset = split_data
        predictions.append(predict_probabilities(model, dataset, weights.card.preprocessing,
                                                 tta="none"))
    assert dataset is not None
    return np.stack(predictions), dataset.labels, dataset.images, dataset.classes


def draw_sheet(images: np.ndarray, captions: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(6, len(images))
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions, strict=False):
        axis.imshow(image)
        axis.set_title(caption, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--sheet", type=Path, help="PNG of the images every model misses")
    args = parser.parse_args()
    probs, labels, images, classes = probabilities(args.models, args.data, args.split)
    predicted = probs.argmax(2)
    wrong = predicted != labels
    for name, misses in zip(args.models, wrong.sum(1), strict=True):
        print(f"{name}: {misses} wrong, accuracy {1 - misses / len(labels):.4f}")
    missed_by = wrong.sum(0)
    print(f"{len(labels)} images [{args.split}]; missed by k of {len(args.models)} models: "
          + ", ".join(f"k={k}: {(missed_by == k).sum()}" for k in range(len(args.models) + 1)))
    every = np.flatnonzero(missed_by == len(args.models))
    print(f"missed by every model: {len(every)} ({len(every) / len(labels):.2%}); a perfect "
          f"choice among the models' answers would reach {1 - len(every) / len(labels):.4f}")
    average = (probs.mean(0).argmax(1) == labels).mean()
    print(f"the models' probabilities averaged: accuracy {average:.4f}")
    pairs = Counter((classes[labels[i]], classes[predicted[0, i]]) for i in every)
    for (true, answered), count in pairs.most_common():
        print(f"  {true} -> {answered} (first model's answer): {count}")
    if args.sheet is not None and len(every):
        captions = [f"#{i} {classes[labels[i]]}\n-> {classes[predicted[0, i]]}" for i in every]
        draw_sheet(images[every], captions, args.sheet)
        print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
