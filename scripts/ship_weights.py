"""Pick the shipped weights from several seeds and report the seed-to-seed spread.

For each run directory (one per seed) this evaluates the best checkpoint on the validation and
test splits. The seed with the best *validation* accuracy is copied into `edge/weights/` with its
card; the test split is only reported (mean, std, min, max over seeds), never used to choose.

    python scripts/ship_weights.py cbam_cnn runs/cbam_cnn_s0 runs/cbam_cnn_s1 runs/cbam_cnn_s2 \
        --data ../shared/data/pbc_bloodmnist_like_64.npz

`--framing ruler` (or another framing) records how the device frames raw single-cell images
(edgehemo.framing) in the shipped card; an npz's crops are already framed, so the measured
figures do not change.
`--compact` stores large weight matrices as int8 per row (edgehemo.train.compact; HemoNet's
103 MB checkpoint becomes ~26 MB) and measures the shipped file again after compression.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
from pathlib import Path

from edgehemo.cards import read_card, write_card
from edgehemo.models import shipped_weights_dir
from edgehemo.preprocess import FRAMINGS
from edgehemo.store.atomic import sha256_file
from edgehemo.train.compact import compress_state
from edgehemo.train.evaluate import evaluate_checkpoint


def _summary(report: dict) -> dict:
    return {
        "accuracy": round(report["accuracy"], 5),
        "weighted_f1": round(report["weighted_f1"], 5),
        "macro_f1": round(report["macro_f1"], 5),
        "recall": {k: round(v["recall"], 4) for k, v in report["per_class"].items()},
        "num_images": report["num_images"],
    }


def data_fingerprint(path: Path) -> str:
    """sha256 of a dataset file, or of an ImageFolder's (relative path, file sha256) list."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()} {sha256_file(file)}\n".encode())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="name of the shipped weights, e.g. cbam_cnn")
    parser.add_argument("runs", nargs="+", type=Path, help="run directories, one per seed")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="report only, copy nothing")
    parser.add_argument("--note", default="", help="appended to the card's notes")
    parser.add_argument("--framing", choices=FRAMINGS,
                        help="record this framing of raw images in the shipped card (npz data "
                             "only: its crops are already framed, so the figures hold)")
    parser.add_argument("--compact", action="store_true",
                        help="store large weight matrices as int8 per row (measured again)")
    args = parser.parse_args()
    if args.framing and args.data.suffix != ".npz":
        parser.error("--framing needs npz data: raw images would have to be measured again "
                     "under the new framing")

    data_sha = data_fingerprint(args.data)
    rows = []
    for run in args.runs:
        checkpoint = run / "best.pt"
        card = read_card(run / "best.json")
        val = _summary(evaluate_checkpoint(checkpoint, args.data, "val"))
        test = _summary(evaluate_checkpoint(checkpoint, args.data, "test"))
        rows.append({"run": str(run), "seed": card.training.seed, "val": val, "test": test,
                     "card": card, "checkpoint": checkpoint})
        print(f"{run}: seed {card.training.seed} val {val['accuracy']:.4f} "
              f"test {test['accuracy']:.4f} weighted F1 {test['weighted_f1']:.4f}")

    test_accuracies = [row["test"]["accuracy"] for row in rows]
    spread = {
        "seeds": [row["seed"] for row in rows],
        "test_accuracy": test_accuracies,
        "val_accuracy": [row["val"]["accuracy"] for row in rows],
        "test_accuracy_mean": round(statistics.mean(test_accuracies), 5),
        "test_accuracy_std": round(statistics.stdev(test_accuracies), 5) if len(rows) > 1 else 0.0,
    }
    chosen = max(rows, key=lambda row: row["val"]["accuracy"])
    print(json.dumps({"chosen_seed": chosen["seed"], "spread": spread}, indent=2))
    if args.dry_run:
        return

    card = chosen["card"].model_copy(deep=True)
    card.name = args.name
    if args.framing:
        card.preprocessing = card.preprocessing.model_copy(update={"framing": args.framing})
    card.data = {**card.data, "source": args.data.name, "sha256": data_sha}
    card.metrics = {"val": chosen["val"], "test": chosen["test"], "seed_spread": spread}
    card.notes = (
        f"Chosen by validation accuracy among seeds {spread['seeds']}. Split: our own stratified "
        "split of the PBC images (BloodMNIST preprocessing), not the official BloodMNIST split. "
        "Single lab, single analyser, one stain: expect lower accuracy on other microscopes."
        + (f" {args.note}" if args.note else "")
    )
    target = shipped_weights_dir() / f"{args.name}.pt"
    if args.compact:
        import torch

        state = torch.load(chosen["checkpoint"], map_location="cpu", weights_only=True)
        torch.save(compress_state(state), target)
        card.checkpoint_sha256 = sha256_file(target)
        card.checkpoint_bytes = target.stat().st_size
        write_card(card, target.with_suffix(".json"))
        card.metrics = {
            "val": _summary(evaluate_checkpoint(target, args.data, "val")),
            "test": _summary(evaluate_checkpoint(target, args.data, "test")),
            "before_compaction": {"val": chosen["val"], "test": chosen["test"]},
            "seed_spread": spread,
        }
        card.notes += (" Shipped compact: weight matrices of 1M values or more stored as int8 per "
                       "row and expanded to fp32 when loaded; metrics measured on this file.")
    else:
        shutil.copyfile(chosen["checkpoint"], target)
    curves = Path(chosen["run"]) / "curves.png"
    if curves.is_file():
        shutil.copyfile(curves, Path("docs/img") / f"curves_{args.name}.png")
    write_card(card, target.with_suffix(".json"))
    print(f"shipped {target} ({target.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
