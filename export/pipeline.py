"""The `edgehemo export` command's engine: checkpoint -> verified artifacts with manifests.

Each artifact is written atomically, described by a manifest, then loaded back through the device
runtime and measured there: the fp32 ONNX against torch (max logit difference), every artifact on
the test split (accuracy) and against the fp32 ONNX (top-1 agreement). A full-integer TFLite
model with a float operator left in it fails validation. Each int8 artifact measured on test data
is judged against the parity rule (`int8_parity`); one under it is still written, and says so.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgehemo
from edgehemo.datasets import ImageSet, align_classes, load_dataset
from edgehemo.device.classifier import Classifier
from edgehemo.device.evaluate import evaluate_classifier
from edgehemo.errors import CheckpointError
from edgehemo.export import onnx_export, tflite
from edgehemo.export.quantize import calibration_subset, quantize_onnx
from edgehemo.manifest import ArtifactManifest, Takes, TensorSpec, manifest_path_for, write_manifest
from edgehemo.models import resolve_weights
from edgehemo.ood import ColourReference
from edgehemo.preprocess import normalize
from edgehemo.store.atomic import sha256_file
from edgehemo.train.evaluate import load_model

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-int8")
FP32_TOLERANCE = 1e-4
PARITY_MIN_AGREEMENT = 0.998  # top-1 agreement of an int8 artifact with its fp32 ONNX
PARITY_MAX_ACCURACY_GAP = 0.002  # test accuracy an int8 artifact may differ from fp32 by


def int8_parity(fp32_accuracy: float, accuracy: float, agreement: float) -> tuple[bool, str]:
    """Whether an int8 artifact keeps its fp32 model's behaviour, and why not."""
    problems = []
    if agreement < PARITY_MIN_AGREEMENT:
        problems.append(f"agreement {agreement:.2%} < {PARITY_MIN_AGREEMENT:.1%}")
    gap = accuracy - fp32_accuracy
    if abs(gap) > PARITY_MAX_ACCURACY_GAP + 1e-9:
        side = "above" if gap > 0 else "under"
        problems.append(f"accuracy {abs(gap) * 100:.2f} points {side} fp32 "
                        f"(at most {PARITY_MAX_ACCURACY_GAP * 100:.1f} either way)")
    return not problems, "; ".join(problems) or "met"


@dataclass
class ExportRow:
    format: str
    name: str
    path: Path
    status: str = "passed"
    accuracy: float | None = None
    agreement: float | None = None
    megabytes: float = 0.0
    parity: str = "-"  # int8 with test data: "met", or what falls short of the rule


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    return formats


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".edgehemo-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CheckpointError(f"{out}: output directory is not writable ({error})") from error


ADAPTATION_KEYS = ("batchnorm_adapted", "self_trained")  # what `edgehemo adapt` records


def site_adaptation(card_data: dict[str, Any]) -> dict[str, Any] | None:
    """The site adaptation a card records (`edgehemo adapt`), for the manifest; None if none."""
    return {key: card_data[key] for key in ADAPTATION_KEYS if key in card_data} or None


class _Exporter:
    """State shared by the artifacts of one export: the model, its card, the data."""

    def __init__(self, model: str | Path, eval_data: Path | None, takes: Takes) -> None:
        self.takes = takes
        self.weights = resolve_weights(model)
        self.card = self.weights.card
        self.spec = self.card.preprocessing
        self.torch_model = load_model(self.weights.checkpoint, self.card)
        self.test: ImageSet | None = (
            align_classes(load_dataset(eval_data, "test", self.spec), self.card.classes)
            if eval_data else None
        )
        self.eval_name = eval_data.name if eval_data else ""
        self.reference: np.ndarray | None = None  # fp32 ONNX predictions on the test split
        self.reference_accuracy = 0.0
        self.colour_reference: ColourReference | None = None

    def reference_batch(self) -> np.ndarray:
        """Up to 64 real test images (a fixed random batch without data) for the torch check."""
        if self.test is not None:
            return normalize(self.test.images[:64], self.spec)
        size = self.spec.input_size
        return np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)

    def describe(self, path: Path, fmt: str, precision: str, io: tuple[TensorSpec, TensorSpec],
                 operators: dict[str, int], calibration: dict[str, Any] | None) -> ArtifactManifest:
        manifest = ArtifactManifest(
            name=path.stem, architecture=self.card.architecture, format=fmt,
            precision=precision, file=path.name, sha256=sha256_file(path),
            bytes=path.stat().st_size, classes=self.card.classes, input=io[0], output=io[1],
            preprocessing=self.spec,
            source_checkpoint_sha256=sha256_file(self.weights.checkpoint),
            adaptation=site_adaptation(self.card.data),
            calibration=calibration, operators=operators,
            colour_reference=self.colour_reference, takes=self.takes,
            edgehemo_version=edgehemo.__version__,
        )
        write_manifest(manifest, manifest_path_for(path))
        return manifest

    def measure(self, path: Path, manifest: ArtifactManifest, row: ExportRow) -> ExportRow:
        """Load through the device runtime, measure, and record the figures in the manifest."""
        backend = "cpu" if manifest.format == "onnx" else "tflite"
        classifier = Classifier.load(path, backend=backend)
        if manifest.format == "onnx" and manifest.precision == "fp32":
            batch = self.reference_batch()
            diff = onnx_export.max_logit_difference(
                self.torch_model, np.asarray(classifier.backend.run(batch)), batch)
            manifest.metrics["max_abs_logit_diff_vs_torch"] = diff
            if diff > FP32_TOLERANCE:
                row.status = f"exported but failed validation (logit diff {diff:.2e})"
        if self.test is not None:
            report, probabilities = evaluate_classifier(classifier, self.test)
            predictions = probabilities.argmax(1)
            manifest.metrics["test"] = {
                "accuracy": round(report["accuracy"], 5),
                "weighted_f1": round(report["weighted_f1"], 5),
                "num_images": report["num_images"], "data": self.eval_name,
            }
            row.accuracy = report["accuracy"]
            if self.reference is None:
                self.reference, self.reference_accuracy = predictions, report["accuracy"]
            else:
                row.agreement = float((predictions == self.reference).mean())
                manifest.metrics["top1_agreement_with_fp32"] = round(row.agreement, 5)
            if manifest.precision == "int8" and row.agreement is not None:
                met, row.parity = int8_parity(self.reference_accuracy, report["accuracy"],
                                              row.agreement)
                manifest.metrics["int8_parity"] = {
                    "met": met, "detail": row.parity,
                    "min_agreement": PARITY_MIN_AGREEMENT,
                    "max_accuracy_gap": PARITY_MAX_ACCURACY_GAP,
                }
                if not met:
                    logger.warning("%s is under the int8 parity rule: %s", path.name, row.parity)
        manifest.verified_runtime = classifier.backend.runtime_version()
        write_manifest(manifest, manifest_path_for(path))
        row.megabytes = path.stat().st_size / 1e6
        return row


def export_model(
    model: str | Path,
    *,
    formats: list[str],
    calibration: Path | None,
    calibration_count: int = 512,
    eval_data: Path | None = None,
    out: Path,
    takes: Takes = "cell_crop",
    bias_correction: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[ExportRow]:
    """Export `model` (shipped name or checkpoint) to each format, measure and describe it.

    `takes` tells capture what the model was trained on: cell crops (the cell finder cuts them)
    or whole fields of view (each field is classified once). `bias_correction` corrects the
    int8 models' biases on the calibration images (`bias_correction.py`,
    `tflite_bias_correction.py`).
    """
    say = progress or (lambda message: None)
    needs_calibration = {"onnx-int8", "tflite", "tflite-int8"} & set(formats)
    if needs_calibration and calibration is None:
        raise ValueError(
            f"--calibration PATH is required for {', '.join(sorted(needs_calibration))} "
            "(real training images: npz or ImageFolder)"
        )
    if {"tflite", "tflite-int8"} & set(formats):
        tflite.converter_python()  # fail before any work if the converter is missing
    _check_writable(out)
    job = _Exporter(model, eval_data, takes)
    name, size = job.card.name, job.spec.input_size
    calibration_set = calibration_info = None
    if needs_calibration:
        assert calibration is not None
        say(f"reading {calibration_count} calibration images from {calibration.name} (train)")
        calibration_set = calibration_subset(
            align_classes(load_dataset(calibration, "train", job.spec), job.card.classes),
            calibration_count,
        )
        calibration_info = {"source": calibration.name, "split": "train",
                            "count": len(calibration_set), "selection": "class-stratified, seed 0"}
        job.colour_reference = ColourReference.fit(
            calibration_set.images, f"{len(calibration_set)} {calibration.name} train images")
    io_onnx = (
        TensorSpec(name=onnx_export.INPUT_NAME, shape=["batch", 3, size, size], dtype="float32",
                   layout="NCHW"),
        TensorSpec(name=onnx_export.OUTPUT_NAME, shape=["batch", len(job.card.classes)],
                   dtype="float32"),
    )
    rows: list[ExportRow] = []
    # The fp32 ONNX is the reference for agreement, so it is always made and measured first.
    fp32_onnx = out / f"{name}_fp32.onnx"
    say(f"exporting {fp32_onnx.name}")
    onnx_export.export_onnx(job.torch_model, size, fp32_onnx)
    manifest = job.describe(fp32_onnx, "onnx", "fp32", io_onnx,
                            onnx_export.operator_summary(fp32_onnx), None)
    rows.append(job.measure(fp32_onnx, manifest, ExportRow("onnx", fp32_onnx.stem, fp32_onnx)))

    if "onnx-int8" in formats:
        assert calibration_set is not None
        path = out / f"{name}_int8.onnx"
        say(f"quantising {path.name} (static QDQ)")
        with tempfile.TemporaryDirectory(prefix="edgehemo-onnx-") as tmp:
            int8_graph = Path(tmp) / f"{name}_ort_int8_graph.onnx"
            onnx_export.export_onnx(job.torch_model, size, int8_graph, graph="ort-int8")
            shifts = quantize_onnx(int8_graph, path, calibration_set, job.spec,
                                   bias_correction=bias_correction)
        manifest = job.describe(path, "onnx", "int8", io_onnx,
                                onnx_export.operator_summary(path),
                                {**(calibration_info or {}), "method": "minmax", "scheme":
                                 "QDQ, per-channel int8 weights, uint8 activations",
                                 "bias_correction": (f"empirical, {len(shifts)} layers"
                                                     if shifts else "none")})
        rows.append(job.measure(path, manifest, ExportRow("onnx-int8", path.stem, path)))

    tflite_formats = [f for f in formats if f.startswith("tflite")]
    if tflite_formats:
        assert calibration_set is not None
        targets = {"tflite": out / f"{name}_fp32.tflite",
                   "tflite-int8": out / f"{name}_int8.tflite"}
        with tempfile.TemporaryDirectory(prefix="edgehemo-onnx-") as tmp:
            reduced = Path(tmp) / f"{name}.onnx"
            onnx_export.export_onnx(job.torch_model, size, reduced, graph="tflite")
            say("converting to TFLite with onnx2tf (about a minute)")
            shifts = tflite.convert(reduced, calibration_set, job.spec,
                                    targets["tflite"] if "tflite" in formats else None,
                                    targets["tflite-int8"] if "tflite-int8" in formats else None,
                                    bias_correction=bias_correction, progress=say)
        for fmt in tflite_formats:
            path = targets[fmt]
            precision = "int8" if fmt.endswith("int8") else "fp32"
            operators, float_ops = tflite.operator_summary(path)
            info = ({**(calibration_info or {}), "method": "TFLite converter, per-channel",
                     "scheme": "full integer: int8 weights, activations, input and output",
                     "bias_correction": (f"empirical, {len(shifts)} layers (ReLU-aware)"
                                         if shifts else "none")}
                    if precision == "int8" else None)
            manifest = job.describe(path, "tflite", precision, tflite.tensor_specs(path),
                                    operators, info)
            row = job.measure(path, manifest, ExportRow(fmt, path.stem, path))
            if precision == "int8" and float_ops:
                row.status = f"exported but failed validation (float ops: {float_ops[:3]})"
            rows.append(row)

    if "onnx" not in formats:
        for leftover in (fp32_onnx, manifest_path_for(fp32_onnx)):
            leftover.unlink(missing_ok=True)
        rows = [row for row in rows if row.format != "onnx"]
    return rows
