"""The model comparison table (like Table 3 of the compact-CNN paper) for every trained model.

Each model is evaluated on the test split of the data it was trained on (the 64x64 npz or the
224x224 ImageFolder subset, chosen by the source its card records), and timed at 1 thread, batch
1: torch eager (fp32) for every model, and the int8 ONNX / TFLite artifacts through the device
runtime where they are shipped. Time per epoch is the training run's own, on this machine;
runs that trained on a subset (`--limit`) also show the epoch time scaled to the full split.
Runs trained and tested on another machine (`--elsewhere DIR...`: a directory holding the run's
card best.json and its test evaluation test.json, e.g. docs/results/gpu/round3/*) are listed
from those files, their epoch time marked as that machine's; their torch latency is measured here
on an untrained instance of the same architecture (the same computation).

    python scripts/model_comparison.py --npz ../shared/data/pbc_bloodmnist_like_64.npz \\
        --folder ../shared/data/pbc_jpeg_subset --runs runs/vgg19_mhsa_s0 runs/cnn_s0 \\
        --elsewhere docs/results/gpu/round3/* --json docs/results/comparison.json \\
        > docs/results/comparison.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from runs_table import read_run  # scripts/ is on the path when a script runs

from edgehemo.cards import ModelCard, read_card
from edgehemo.device.classifier import Classifier
from edgehemo.export.benchmark import median_ms
from edgehemo.models import list_artifacts, list_shipped
from edgehemo.train.evaluate import evaluate_checkpoint, load_model
from edgehemo.train.registry import create_model

FULL_TRAIN_IMAGES = {"npz": 11952, "folder": 2400}


def weighted(report: dict[str, Any], key: str) -> float:
    per_class = report["per_class"].values()
    total = sum(c["support"] for c in per_class)
    return sum(c[key] * c["support"] for c in per_class) / total if total else 0.0


def torch_ms(checkpoint: Path | None, card: ModelCard, repeats: int) -> float:
    """Median ms of one image at 1 thread; an untrained instance where `checkpoint` is None."""
    torch.set_num_threads(1)
    model = (load_model(checkpoint, card) if checkpoint is not None else
             create_model(card.architecture, num_classes=card.num_classes,
                          input_size=card.input_size).eval())
    x = torch.randn(1, 3, card.input_size, card.input_size)
    with torch.inference_mode():
        return median_ms(lambda: model(x), warmup=3, repeats=repeats)


def int8_rows(card: ModelCard, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for artifact in list_artifacts():
        manifest = artifact.manifest
        if manifest.precision != "int8" or manifest.name != f"{card.name}_int8":
            continue
        backend = "cpu" if manifest.format == "onnx" else "tflite"
        classifier = Classifier.load(artifact.path, backend=backend, settings={"threads": 1})
        size = manifest.preprocessing.input_size
        batch = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        rows.append({
            "format": manifest.format,
            "accuracy": manifest.metrics.get("test", {}).get("accuracy"),
            "agreement": manifest.metrics.get("top1_agreement_with_fp32"),
            "megabytes": round(manifest.bytes / 1e6, 2),
            "ms": round(median_ms(lambda c=classifier, b=batch: c.backend.run(b), warmup=3,
                                  repeats=repeats), 3),
        })
    return rows


def measure(name: str, checkpoint: Path, card: ModelCard, data: dict[str, Path],
            repeats: int) -> dict[str, Any] | None:
    kind = "npz" if str(card.data.get("source", "")).endswith(".npz") else "folder"
    if data.get(kind) is None or not data[kind].exists():
        print(f"{name}: skipped, its {kind} data was not given or is absent", file=sys.stderr)
        return None
    print(f"{name}: evaluating on {data[kind]} (test)", file=sys.stderr)
    report = evaluate_checkpoint(checkpoint, data[kind], "test")
    training = card.training
    used = int(card.data.get("train_images", 0)) or FULL_TRAIN_IMAGES[kind]
    per_epoch = training.seconds_per_epoch
    return {
        "name": name, "architecture": card.architecture, "input": card.input_size,
        "data": kind, "params_m": round(card.num_params / 1e6, 3),
        "fp32_mb": round(card.num_params * 4 / 1e6, 1),
        "shipped_mb": round(checkpoint.stat().st_size / 1e6, 1),
        "accuracy": round(report["accuracy"], 6), "weighted_f1": round(report["weighted_f1"], 4),
        "weighted_precision": round(weighted(report, "precision"), 4),
        "weighted_recall": round(weighted(report, "recall"), 4),
        "epochs": training.epochs_run, "train_images": used,
        "seconds_per_epoch": round(per_epoch, 1),
        "seconds_per_full_epoch": round(per_epoch * FULL_TRAIN_IMAGES[kind] / used, 1),
        "torch_fp32_ms": round(torch_ms(checkpoint, card, repeats), 2),
        "int8": int8_rows(card, repeats),
    }


def measured_elsewhere(path: Path, machine: str, repeats: int) -> dict[str, Any]:
    """A row from a run's card and test evaluation made on another machine (e.g. a GPU)."""
    run = read_run(path)
    if run is None or run.card is None or run.test is None:
        raise SystemExit(f"{path}: needs history.csv, best.json and test.json (a finished run)")
    card, report = run.card, run.test
    if report.get("split") != "test":
        raise SystemExit(f"{path / 'test.json'}: not a test-split evaluation")
    kind = "npz" if str(card.data.get("source", "")).endswith(".npz") else "folder"
    print(f"{path.name}: from {path} (trained on {machine})", file=sys.stderr)
    return {
        "name": path.name, "architecture": card.architecture, "input": card.input_size,
        "data": kind, "params_m": round(card.num_params / 1e6, 3),
        "fp32_mb": round(card.num_params * 4 / 1e6, 1), "shipped_mb": None,
        "accuracy": round(report["accuracy"], 6), "weighted_f1": round(report["weighted_f1"], 4),
        "weighted_precision": round(weighted(report, "precision"), 4),
        "weighted_recall": round(weighted(report, "recall"), 4),
        "epochs": card.training.epochs_run,
        "train_images": int(card.data.get("train_images", 0)) or FULL_TRAIN_IMAGES[kind],
        "seconds_per_epoch": round(run.median_seconds, 1),
        "seconds_per_full_epoch": round(run.median_seconds, 1),
        "trained_on": machine,
        "torch_fp32_ms": round(torch_ms(None, card, repeats), 2),
        "int8": [],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | input | params | fp32 size MB | epochs (train images) | test acc | weighted F1 "
        "| w. precision | w. recall | s/epoch (full split) | torch ms | int8 ONNX acc / ms "
        "| int8 TFLite acc / ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        int8 = {row["format"]: row for row in r["int8"]}

        def cell(fmt: str, int8: dict[str, Any] = int8) -> str:
            row = int8.get(fmt)
            if row is None:
                return "-"
            return f"{row['accuracy'] * 100:.2f}% / {row['ms']:.2f}"

        epoch = f"{r['seconds_per_epoch']:.0f}"
        if r.get("trained_on"):
            epoch += f" ({r['trained_on']})"
        elif r["seconds_per_full_epoch"] != r["seconds_per_epoch"]:
            epoch += f" ({r['seconds_per_full_epoch']:.0f})"
        lines.append(
            f"| {r['name']} | {r['input']} | {r['params_m']:.2f}M | {r['fp32_mb']:.1f} "
            f"| {r['epochs']} ({r['train_images']}) | {r['accuracy'] * 100:.2f}% "
            f"| {r['weighted_f1']:.4f} | {r['weighted_precision']:.4f} "
            f"| {r['weighted_recall']:.4f} | {epoch} | {r['torch_fp32_ms']:.2f} "
            f"| {cell('onnx')} | {cell('tflite')} |"
        )
    return "\n".join(lines)


def header(rows: list[dict[str, Any]], machine: str) -> str:
    """The title and what the table's figures are, for docs/results/comparison.md."""
    today = datetime.date.today().strftime("%-d %b %Y")
    text = (
        f"# Model comparison\n\nGenerated by `scripts/model_comparison.py` (command at the end "
        f"of `scripts/ship_all.sh`), one run on a {os.cpu_count()}-core CPU, {today}. Test split "
        "of each model's own data: the 64x64 npz (3,015 images) or the 224x224 subset (800). "
        "Latency: median ms per image, 1 thread, batch 1 (torch eager fp32; int8 through the "
        "device runtime, shipped artifacts only). s/epoch is the run's own (contended epochs "
        "included); hemonet and hemonet_gap show their second training stage."
    )
    if any(r.get("trained_on") for r in rows):
        text += (
            f" Rows marked ({machine}) were trained and tested on that GPU (their checkpoints "
            "stayed there: see [gpu_runs.md](gpu_runs.md)); their s/epoch is the median epoch "
            "there, their torch latency is measured here on an untrained instance of the same "
            "architecture."
        )
    return text + " `cnn` and the VGG15 family are registered and tested but not trained.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", type=Path, help="the 64x64 data (MedMNIST layout)")
    parser.add_argument("--folder", type=Path, help="the 224x224 ImageFolder data")
    parser.add_argument("--runs", nargs="*", type=Path, default=[],
                        help="training run directories of models that are not shipped")
    parser.add_argument("--elsewhere", nargs="*", type=Path, default=[],
                        help="run directories (best.json + test.json) trained and tested on "
                             "another machine")
    parser.add_argument("--machine", default="H100",
                        help="what trained the --elsewhere runs, shown beside their epoch time")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per measurement")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    data = {"npz": args.npz, "folder": args.folder}
    rows = []
    for weights in list_shipped():
        row = measure(weights.name, weights.checkpoint, weights.card, data, args.repeats)
        if row:
            rows.append(row)
    for run in args.runs:
        if not (run / "best.json").is_file():
            print(f"{run}: skipped, no trained checkpoint (best.json) there", file=sys.stderr)
            continue
        card = read_card(run / "best.json")
        row = measure(card.architecture, run / "best.pt", card, data, args.repeats)
        if row:
            rows.append(row)
    rows.extend(measured_elsewhere(run, args.machine, args.repeats) for run in args.elsewhere)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(header(rows, args.machine))
    print(markdown(rows))


if __name__ == "__main__":
    main()
