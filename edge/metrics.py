"""Classification metrics in numpy: what a paper reports and what the device re-measures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgehemo.views import describe_views


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): rows are true classes, columns predicted classes."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} out of range 0..{num_classes - 1}")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_report(
    labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """Accuracy, weighted and macro F1, and per-class precision, recall (= sensitivity),
    F1, specificity and support, plus the confusion matrix."""
    matrix = confusion_matrix(labels, predictions, len(classes))
    total = matrix.sum()
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    fp, fn = predicted - tp, support - tp
    tn = total - tp - fp - fn
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    specificity = _ratio(tn, tn + fp)
    weights = support / total if total else support
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "sensitivity": float(recall[i]),
            "specificity": float(specificity[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    present = support > 0
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "weighted_f1": float((f1 * weights).sum()),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "num_images": int(total),
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of a report from `classification_report` (plus any extra keys)."""
    lines = []
    header = report.get("model", "")
    if header:
        views = report.get("tta")
        split = ("every image: no train/val/test folders" if report.get("whole_folder")
                 else report.get("split", ""))
        lines.append(f"model {header} on {report.get('data', '')} [{split}]"
                     + (f", {describe_views(views)}" if views else ""))
    lines.append(
        f"accuracy {report['accuracy']:.4f}  weighted F1 {report['weighted_f1']:.4f}  "
        f"macro F1 {report['macro_f1']:.4f}  images {report['num_images']}"
    )
    if "num_params" in report:
        lines.append(
            f"params {report['num_params']:,}  file {report.get('file_bytes', 0) / 1e6:.2f} MB  "
            f"{report.get('ms_per_image', 0):.3f} ms/image"
        )
    width = max(len(name) for name in report["classes"])
    lines.append(
        f"{'class':<{width}}  precision  recall     f1  specificity  support"
    )
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:.4f}"
            f"  {row['specificity']:11.4f}  {row['support']:7d}"
        )
    return "\n".join(lines)


def plot_confusion_matrix(report: dict[str, Any], path: str | Path, *, title: str = "") -> None:
    """Write the confusion matrix (counts, rows normalised for colour) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(report["confusion_matrix"])
    classes = report["classes"]
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.8 * len(classes)
    fig, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix")
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if norm[i, j] > 0.5 else "black"
            axis.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=axis, fraction=0.046)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
