"""Print the README's results tables from the shipped model cards and artifact manifests.

The cards' figures come from `scripts/ship_weights.py` (which evaluates every seed on val and
test) and the manifests' from `edgehemo export` (which measures through the device runtime), so
this script only formats what those commands measured.
"""

from __future__ import annotations

from edgehemo.models import list_artifacts, list_shipped

PAPER = {"cbam_cnn": ("0.47M", "97.92%"), "se_cnn": ("0.46M", "97.92%"),
         "sa_cnn": ("0.42M", "97.46%")}


def main() -> None:
    print("| model | test split | params (paper) | epochs | seeds: test accuracy | mean ± std | "
          "shipped seed: test acc | weighted F1 | lowest class recall | s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for weights in list_shipped():
        card = weights.card
        test = card.metrics["test"]
        spread = card.metrics.get("seed_spread", {})
        accuracies = ", ".join(f"{a * 100:.2f}" for a in spread.get("test_accuracy", []))
        worst = min(test["recall"].items(), key=lambda item: item[1])
        params, _ = PAPER.get(card.architecture, ("-", "-"))
        training = card.training
        print(
            f"| {card.name} | {card.data.get('source', '-')} ({test['num_images']}) "
            f"| {card.num_params / 1e6:.3f}M ({params}) | {training.epochs_run} "
            f"| {accuracies} | {spread.get('test_accuracy_mean', 0) * 100:.2f} ± "
            f"{spread.get('test_accuracy_std', 0) * 100:.2f} | {test['accuracy'] * 100:.2f}% "
            f"(seed {training.seed}) | {test['weighted_f1']:.4f} | {worst[0]} "
            f"{worst[1] * 100:.1f}% | {training.seconds_per_epoch:.0f} |"
        )
    print()
    names = [w.name for w in list_shipped()]
    classes = list_shipped()[0].card.metrics["test"]["recall"] if names else {}
    print("| per-class recall (test) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label in classes:
        row = [f"{w.card.metrics['test']['recall'][label] * 100:.1f}" for w in list_shipped()]
        print(f"| {label} | " + " | ".join(row) + " |")
    print()
    print("| artifact | format | size MB | test accuracy | agreement with fp32 | runtime |")
    print("|---|---|---|---|---|---|")
    for artifact in list_artifacts():
        manifest = artifact.manifest
        metrics = manifest.metrics
        agreement = metrics.get("top1_agreement_with_fp32")
        print(
            f"| {artifact.name} | {manifest.format} | {manifest.bytes / 1e6:.2f} | "
            f"{metrics.get('test', {}).get('accuracy', 0) * 100:.2f}% | "
            f"{f'{agreement * 100:.2f}%' if agreement is not None else 'reference'} | "
            f"{manifest.verified_runtime} |"
        )


if __name__ == "__main__":
    main()
