"""Print a markdown table of training runs from what each run wrote (no re-evaluation).

For runs trained elsewhere (e.g. on a GPU with scripts/train_on_gpu.sh) whose large checkpoints
stay there: each run directory holds best.json (model card), history.csv and, where the run
finished its evaluation, test.json (`edgehemo evaluate --json`).

    python scripts/runs_table.py docs/results/gpu/round2/* > docs/results/gpu_runs.md
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgehemo.cards import ModelCard, read_card


@dataclass
class Run:
    """What a training run directory holds; card and test are None where the run wrote none."""

    path: Path
    history: list[dict[str, str]]
    card: ModelCard | None
    test: dict[str, Any] | None

    @property
    def median_seconds(self) -> float:
        """Median epoch time: the first epoch carries one-off costs on a GPU."""
        return statistics.median(float(r["seconds"]) for r in self.history)


def read_run(path: Path) -> Run | None:
    """The run in `path`, or None where it has no history.csv (it never finished an epoch)."""
    history_path = path / "history.csv"
    if not history_path.is_file():
        return None
    with history_path.open() as rows:
        history = list(csv.DictReader(rows))
    card = read_card(path / "best.json") if (path / "best.json").is_file() else None
    test = json.loads((path / "test.json").read_text()) if (path / "test.json").is_file() else None
    return Run(path, history, card, test)


def row(run: Run) -> str:
    best_val = max(float(r["val_accuracy"]) for r in run.history)
    card, test = run.card, run.test
    architecture = card.architecture if card else run.path.name
    params = f"{card.num_params / 1e6:.2f}M" if card else "-"
    hyper = card.training.hyperparameters if card and card.training else {}
    recipe = ", ".join(f"{k} {hyper[k]}" for k in ("augment", "lr", "loss", "colour_norm")
                       if k in hyper)
    if test:
        worst = min(test["per_class"].items(), key=lambda item: item[1]["recall"])
        tested = (f"{test['accuracy'] * 100:.2f}% | {test['weighted_f1']:.4f} "
                  f"| {worst[0]} {worst[1]['recall'] * 100:.1f}%")
    else:
        tested = "not evaluated | - | -"
    return (f"| {run.path.name} | {architecture} | {params} | {recipe or '-'} "
            f"| {len(run.history)} | {run.median_seconds:.1f} | {best_val * 100:.2f}% "
            f"| {tested} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    args = parser.parse_args()
    print("| run | architecture | params | recipe | epochs | median s/epoch | best val acc "
          "| test acc | weighted F1 | lowest class recall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(args.runs):
        run = read_run(path)
        if run is not None:
            print(row(run))


if __name__ == "__main__":
    main()
