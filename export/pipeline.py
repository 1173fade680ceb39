"""The `edgehemo export` command's engine: checkpoint -> verified artifacts with manifests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgehemo
from edgehemo.datasets import load_dataset
from edgehemo.device.classifier import Classifier
from edgehemo.device.evaluate import align_classes, evaluate_classifier
from edgehemo.errors import CheckpointError
from edgehemo.export.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    max_logit_difference,
    operator_summary,
)
from edgehemo.export.quantize import calibration_subset, quantize_onnx
from edgehemo.manifest import ArtifactManifest, TensorSpec, manifest_path_for, write_manifest
from edgehemo.models import resolve_weights
from edgehemo.store.atomic import sha256_file
from edgehemo.train.evaluate import load_model

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx-int8")
FP32_TOLERANCE = 1e-4


@dataclass
class ExportRow:
    format: str
    name: str
    path: Path | None
    status: str
    accuracy: float | None = None
    agreement: float | None = None
    megabytes: float | None = None


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {unknown}; this version exports {', '.join(FORMATS)}")
    return formats


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".edgehemo-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CheckpointError(f"{out}: output directory is not writable ({error})") from error


def export_model(
    model: str | Path,
    *,
    formats: list[str],
    calibration: Path | None,
    calibration_count: int = 512,
    eval_data: Path | None = None,
    out: Path,
    progress: Callable[[str], None] | None = None,
) -> list[ExportRow]:
    """Export `model` (shipped name or checkpoint) to each format, measure and describe it."""
    say = progress or (lambda message: None)
    weights = resolve_weights(model)
    card = weights.card
    if "onnx-int8" in formats and calibration is None:
        raise ValueError("int8 needs --calibration PATH (real training images: npz or folder)")
    _check_writable(out)
    torch_model = load_model(weights.checkpoint, card)
    spec = card.preprocessing
    test = (align_classes(load_dataset(eval_data, "test", spec), card.classes)
            if eval_data else None)
    common: dict[str, Any] = {
        "architecture": card.architecture,
        "classes": card.classes,
        "preprocessing": spec,
        "source_checkpoint_sha256": sha256_file(weights.checkpoint),
        "edgehemo_version": edgehemo.__version__,
    }
    size = spec.input_size
    io_input = TensorSpec(name=INPUT_NAME, shape=["batch", 3, size, size], dtype="float32",
                          layout="NCHW")
    io_output = TensorSpec(name=OUTPUT_NAME, shape=["batch", len(card.classes)], dtype="float32")
    rows: list[ExportRow] = []
    fp32_path = out / f"{card.name}_fp32.onnx"
    fp32_predictions: np.ndarray | None = None

    def finish(path: Path, precision: str, calibration_info: dict[str, Any] | None) -> ExportRow:
        nonlocal fp32_predictions
        manifest = ArtifactManifest(
            name=path.stem, format="onnx", precision=precision, file=path.name,
            sha256=sha256_file(path), bytes=path.stat().st_size, input=io_input,
            output=io_output, calibration=calibration_info, operators=operator_summary(path),
            **common,
        )
        write_manifest(manifest, manifest_path_for(path))
        classifier = Classifier.load(path, backend="cpu", settings={"threads": 0})
        row = ExportRow(f"onnx{'-int8' if precision == 'int8' else ''}", path.stem, path,
                        "passed", megabytes=path.stat().st_size / 1e6)
        if precision == "fp32":
            batch = np.asarray(classifier.backend.run(_reference_batch(test, spec)))
            diff = max_logit_difference(torch_model, batch, _reference_batch(test, spec))
            manifest.metrics["max_abs_logit_diff_vs_torch"] = diff
            if diff > FP32_TOLERANCE:
                row.status = f"exported but failed validation (logit diff {diff:.2e})"
        if test is not None:
            report, probabilities = evaluate_classifier(classifier, test)
            predictions = probabilities.argmax(1)
            manifest.metrics["test"] = {
                "accuracy": round(report["accuracy"], 5),
                "weighted_f1": round(report["weighted_f1"], 5),
                "num_images": report["num_images"],
                "data": eval_data.name if eval_data else "",
            }
            row.accuracy = report["accuracy"]
            if precision == "fp32":
                fp32_predictions = predictions
            elif fp32_predictions is not None:
                row.agreement = float((predictions == fp32_predictions).mean())
                manifest.metrics["top1_agreement_with_fp32"] = round(row.agreement, 5)
        manifest.verified_runtime = classifier.backend.runtime_version()
        write_manifest(manifest, manifest_path_for(path))
        return row

    if "onnx" in formats or "onnx-int8" in formats:
        say(f"exporting {fp32_path.name}")
        export_onnx(torch_model, size, fp32_path)
        rows.append(finish(fp32_path, "fp32", None))
    if "onnx-int8" in formats:
        assert calibration is not None
        int8_path = out / f"{card.name}_int8.onnx"
        say(f"calibrating on {calibration_count} training images of {calibration.name}")
        calibration_set = calibration_subset(
            align_classes(load_dataset(calibration, "train", spec), card.classes),
            calibration_count,
        )
        quantize_onnx(fp32_path, int8_path, calibration_set, spec)
        rows.append(finish(int8_path, "int8", {
            "source": calibration.name, "split": "train", "count": len(calibration_set),
            "method": "minmax", "format": "QDQ, per-channel int8 weights, uint8 activations",
        }))
    if "onnx" not in formats:
        fp32_path.unlink(missing_ok=True)
        manifest_path_for(fp32_path).unlink(missing_ok=True)
        rows = [row for row in rows if row.format != "onnx"]
    return rows


def _reference_batch(test: Any, spec: Any) -> np.ndarray:
    """Up to 64 real images (or, without data, a fixed random batch) for the fp32 check."""
    from edgehemo.preprocess import normalize

    if test is not None:
        return normalize(test.images[:64], spec)
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 3, spec.input_size, spec.input_size)).astype(np.float32)
