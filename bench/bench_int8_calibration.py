"""Which int8 calibration keeps an ONNX model closest to its fp32, judged without the test split.

    python bench/bench_int8_calibration.py hemonet --data ../shared/data/pbc_jpeg_subset \\
        --variants minmax:256:uncorrected minmax:256 minmax:512 minmax:256:float-head \\
        minmax:256:float-stem percentile:128

Each variant is METHOD:COUNT[:OPTION], quantised as `edgehemo export` does (`quantize_onnx`,
which corrects each quantised layer's bias on the calibration images) on
COUNT class-stratified training images (`calibration_indices`) and compared with the fp32 graph
on every other training image and the validation split: top-1 disagreements, mean KL divergence
of the softmax, mean absolute logit difference, and the 99th percentile of the top-1 margin lost.
OPTION `uncorrected` skips the bias correction (`--uncorrected` skips it for every variant,
as the route was before 30 Nov 2026); the others leave more in float besides
the spatial gates `edgehemo export` always keeps: `float-head` the last Gemm (the logits layer),
`float-stem` the first convolution, `node:NAME` that node. `--sweep` adds one variant per
convolution and Gemm that int8 quantises (minmax:256 with that node in float): a layer-by-layer
sensitivity analysis. `--test` also measures the test split, for the final figure of the variant
already chosen on the others, with the fp32 top-two margin of each test image that flips and the
split's smallest margins. Percentile and entropy calibration hold histograms of
every activation: at 224x224 keep COUNT small.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgehemo.datasets import ImageSet, align_classes, load_dataset
from edgehemo.export import onnx_export
from edgehemo.export.quantize import calibration_indices, float_islands, quantize_onnx
from edgehemo.models import resolve_weights
from edgehemo.preprocess import PreprocessSpec, normalize
from edgehemo.train.evaluate import load_model

KEEP = {"float-head": ("head",), "float-stem": ("stem",)}


def keep_of(variant: str) -> tuple[str, ...]:
    """What METHOD:COUNT[:OPTION] keeps in float (a node name may itself hold colons)."""
    parts = variant.split(":", 2)
    if len(parts) < 3 or parts[2] == "uncorrected":
        return ()
    if parts[2].startswith("node:"):
        return (parts[2],)
    if parts[2] not in KEEP:
        raise SystemExit(f"unknown OPTION {parts[2]!r}: uncorrected, {', '.join(KEEP)} or "
                         "node:NAME")
    return KEEP[parts[2]]


def quantised_layers(path: Path) -> list[str]:
    """Convolutions and Gemms that int8 quantises (the spatial gates stay float anyway)."""
    graph = onnx.load(str(path))
    left = set(float_islands(graph))
    return [n.name for n in graph.graph.node
            if n.op_type in ("Conv", "Gemm") and n.name not in left]


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


def top_margin(z: np.ndarray) -> np.ndarray:
    """Each row's top logit over its second."""
    ordered = np.sort(z, axis=1)
    return ordered[:, -1] - ordered[:, -2]


def closeness(reference: np.ndarray, quantized: np.ndarray) -> dict[str, float]:
    rows = np.arange(len(reference))
    top = reference.argmax(1)
    is_top = np.eye(reference.shape[1], dtype=bool)[top]

    def margin(z: np.ndarray) -> np.ndarray:  # fp32's top logit over the best other class
        return z[rows, top] - np.where(is_top, -np.inf, z).max(1)

    kl = (np.exp(log_softmax(reference)) * (log_softmax(reference) - log_softmax(quantized))).sum(1)
    return {"images": len(reference), "differ": int((quantized.argmax(1) != top).sum()),
            "kl_mean": float(kl.mean()), "logit_diff": float(np.abs(quantized - reference).mean()),
            "margin_lost_p99": float(np.quantile(margin(reference) - margin(quantized), 0.99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="shipped name or best.pt")
    parser.add_argument("--data", type=Path, required=True, help="the model's training data")
    parser.add_argument("--variants", nargs="+", default=["minmax:256"])
    parser.add_argument("--sweep", action="store_true",
                        help="add minmax:256 with each quantised Conv/Gemm in float, one at a time")
    parser.add_argument("--test", action="store_true", help="also measure the test split")
    parser.add_argument("--uncorrected", action="store_true",
                        help="no bias correction in any variant (the route before 30 Nov 2026)")
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
        reference = {"train": logits(work / "fp32.onnx", train.images, spec),
                     "val": logits(work / "fp32.onnx", val.images, spec)}
        if test is not None:
            reference["test"] = logits(work / "fp32.onnx", test.images, spec)
            nearest = np.sort(top_margin(reference["test"]))[:4]
            print("smallest fp32 top-two margins on the test split: "
                  + ", ".join(f"{m:.3f}" for m in nearest))
        variants = list(args.variants)
        if args.sweep:
            variants += [f"minmax:256:node:{name}"
                         for name in quantised_layers(work / "int8_graph.onnx")]
        print("| variant | non-test images | differ | KL mean | mean abs logit diff "
              "| margin lost p99 | test differ |")
        print("|---|---|---|---|---|---|---|")
        for variant in variants:
            method, count = variant.split(":")[:2]
            chosen = calibration_indices(train, int(count))
            out = work / "int8.onnx"
            quantize_onnx(work / "int8_graph.onnx", out, train.subset(chosen), spec,
                          method=method, keep_float=keep_of(variant),
                          bias_correction=not (args.uncorrected
                                               or variant.endswith(":uncorrected")))
            rest = np.setdiff1d(np.arange(len(train)), chosen)
            scores = closeness(
                np.concatenate([reference["train"][rest], reference["val"]]),
                np.concatenate([logits(out, train.images[rest], spec),
                                logits(out, val.images, spec)]))
            tested = "-"
            if test is not None:
                flipped = np.flatnonzero(logits(out, test.images, spec).argmax(1)
                                         != reference["test"].argmax(1))
                margins = ", ".join(f"{m:.3f}" for m in top_margin(reference["test"][flipped]))
                tested = f"{len(flipped)} of {len(test)}" + (f" (fp32 margins {margins})"
                                                              if len(flipped) else "")
            print(f"| {variant} | {scores['images']} | {scores['differ']} "
                  f"| {scores['kl_mean']:.2e} | {scores['logit_diff']:.4f} "
                  f"| {scores['margin_lost_p99']:.3f} | {tested} |", flush=True)


if __name__ == "__main__":
    main()
