"""Print a markdown table of training runs from what each run wrote (no re-evaluation).

For runs trained elsewhere (e.g. on a GPU with scripts/train_on_gpu.sh) whose large checkpoints
stay there: each run directory holds best.json (model card), history.csv and, where the run
finished its evaluation, test.json (`edgehemo evaluate --json`).

    python scripts/runs_table.py docs/results/gpu/round2/* > docs/results/gpu_runs.md
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from edgehemo.cards import read_card


def row(run: Path) -> str | None:
    history_path = run / "history.csv"
    if not history_path.is_file():
        return None
    history = list(csv.DictReader(io.StringIO(history_path.read_text())))
    best_val = max(float(r["val_accuracy"]) for r in history)
    card = read_card(run / "best.json") if (run / "best.json").is_file() else None
    test = json.loads((run / "test.json").read_text()) if (run / "test.json").is_file() else None
    architecture = card.architecture if card else run.name
    params = f"{card.num_params / 1e6:.2f}M" if card else "-"
    hyper = card.training.hyperparameters if card and card.training else {}
    recipe = ", ".join(f"{k} {hyper[k]}" for k in ("augment", "lr", "loss", "colour_norm")
                       if k in hyper)
    seconds = sorted(float(r["seconds"]) for r in history)
    median_seconds = seconds[len(seconds) // 2]
    if test:
        worst = min(test["per_class"].items(), key=lambda item: item[1]["recall"])
        tested = (f"{test['accuracy'] * 100:.2f}% | {test['weighted_f1']:.4f} "
                  f"| {worst[0]} {worst[1]['recall'] * 100:.1f}%")
    else:
        tested = "not evaluated | - | -"
    return (f"| {run.name} | {architecture} | {params} | {recipe or '-'} | {len(history)} "
            f"| {median_seconds:.1f} | {best_val * 100:.2f}% | {tested} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    args = parser.parse_args()
    print("| run | architecture | params | recipe | epochs | median s/epoch | best val acc "
          "| test acc | weighted F1 | lowest class recall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in sorted(args.runs):
        line = row(run)
        if line:
            print(line)


if __name__ == "__main__":
    main()
