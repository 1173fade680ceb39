"""Which int8 calibration keeps an ONNX model closest to its fp32, judged without the test split.

    python bench/bench_int8_calibration.py hemonet --data ../shared/data/pbc_jpeg_subset \\
        --variants minmax:256 minmax:512 minmax:256:float-head minmax:256:float-stem \\
        percentile:128

Each variant is METHOD:COUNT[:KEEP], calibrated on COUNT class-stratified training images (as
`edgehemo export` picks them) and compared with the fp32 graph on every other training image and
the validation split: top-1 disagreements, mean KL divergence of the softmax, mean absolute logit
difference, and the 99th percentile of the top-1 margin lost. KEEP leaves more in float besides
the spatial gates `edgehemo export` always keeps: `float-head` the last Gemm (the logits layer),
`float-stem` the first convolution. `--test` also measures the test split, for the final figure
of the variant already chosen on the others. Percentile and entropy calibration hold histograms of
every activation: at 224x224 keep COUNT small (128 took ~6 GB).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from edgehemo.datasets import ImageSet, align_classes, load_dataset
from edgehemo.export import onnx_export
from edgehemo.export.quantize import calibration_indices, float_islands
from edgehemo.models import resolve_weights
from edgehemo.preprocess import PreprocessSpec, normalize
from edgehemo.train.evaluate import load_model

METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}


class Batches(CalibrationDataReader):
    def __init__(self, images: np.ndarray, spec: PreprocessSpec) -> None:
        self._batches = iter(normalize(images[i : i + 16], spec) for i in range(0, len(images), 16))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {onnx_export.INPUT_NAME: batch}


def logits(path: Path, images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([
        session.run(None, {onnx_export.INPUT_NAME: normalize(images[i : i + 32], spec)})[0]
        for i in range(0, len(images), 32)
    ])


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def closeness(reference: np.ndarray, quantized: np.ndarray) -> dict[str, float]:
    rows = np.arange(len(reference))
    top = reference.argmax(1)
    others = np.where(np.eye(reference.shape[1], dtype=bool)[top], -np.inf, reference)
    margin = reference[rows, top] - others.max(1)
    others_q = np.where(np.eye(reference.shape[1], dtype=bool)[top], -np.inf, quantized)
    margin_q = quantized[rows, top] - others_q.max(1)
    kl = (np.exp(log_softmax(reference)) * (log_softmax(reference) - log_softmax(quantized))).sum(1)
    return {"images": len(reference), "differ": int((quantized.argmax(1) != top).sum()),
            "kl_mean": float(kl.mean()), "logit_diff": float(np.abs(quantized - reference).mean()),
            "margin_lost_p99": float(np.quantile(margin - margin_q, 0.99))}


def quantize(prepared: Path, out: Path, method: str, calibration: np.ndarray,
             spec: PreprocessSpec, keep: str) -> None:
    graph = onnx.load(str(prepared))
    exclude = float_islands(graph)
    if keep == "float-head":
        exclude += [n.name for n in graph.graph.node if n.op_type == "Gemm"][-1:]
    elif keep == "float-stem":
        exclude += [n.name for n in graph.graph.node if n.op_type == "Conv"][:1]
    elif keep:
        raise SystemExit(f"unknown KEEP {keep!r}: float-head or float-stem")
    quantize_static(str(prepared), str(out), Batches(calibration, spec),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=METHODS[method], nodes_to_exclude=exclude,
                    extra_options={"CalibPercentile": 99.999} if method == "percentile" else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="shipped name or best.pt")
    parser.add_argument("--data", type=Path, required=True, help="the model's training data")
    parser.add_argument("--variants", nargs="+", default=["minmax:256"])
    parser.add_argument("--test", action="store_true", help="also measure the test split")
    args = parser.parse_args()
    weights = resolve_weights(args.model)
    spec = weights.card.preprocessing

    def split(name: str) -> ImageSet:
        return align_classes(load_dataset(args.data, name, spec), weights.card.classes)

    train, val = split("train"), split("val")
    test = split("test") if args.test else None
    model = load_model(weights.checkpoint, weights.card)
    with tempfile.TemporaryDirectory(prefix="edgehemo-calib-") as tmp:
        work = Path(tmp)
        onnx_export.export_onnx(model, spec.input_size, work / "fp32.onnx")
        onnx_export.export_onnx(model, spec.input_size, work / "int8_graph.onnx", graph="ort-int8")
        quant_pre_process(str(work / "int8_graph.onnx"), str(work / "prepared.onnx"),
                          skip_symbolic_shape=True)
        reference = {"train": logits(work / "fp32.onnx", train.images, spec),
                     "val": logits(work / "fp32.onnx", val.images, spec)}
        if test is not None:
            reference["test"] = logits(work / "fp32.onnx", test.images, spec)
        print("| variant | non-test images | differ | KL mean | mean abs logit diff "
              "| margin lost p99 | test differ |")
        print("|---|---|---|---|---|---|---|")
        for variant in args.variants:
            method, count, *keep = variant.split(":")
            if method not in METHODS:
                raise SystemExit(f"unknown method {method!r}: {', '.join(METHODS)}")
            chosen = calibration_indices(train, int(count))
            out = work / "int8.onnx"
            quantize(work / "prepared.onnx", out, method, train.images[chosen], spec,
                     keep[0] if keep else "")
            rest = np.setdiff1d(np.arange(len(train)), chosen)
            scores = closeness(
                np.concatenate([reference["train"][rest], reference["val"]]),
                np.concatenate([logits(out, train.images[rest], spec),
                                logits(out, val.images, spec)]))
            tested = "-"
            if test is not None:
                differ = int((logits(out, test.images, spec).argmax(1)
                              != reference["test"].argmax(1)).sum())
                tested = f"{differ} of {len(test)}"
            print(f"| {variant} | {scores['images']} | {scores['differ']} "
                  f"| {scores['kl_mean']:.2e} | {scores['logit_diff']:.4f} "
                  f"| {scores['margin_lost_p99']:.3f} | {tested} |", flush=True)


if __name__ == "__main__":
    main()
