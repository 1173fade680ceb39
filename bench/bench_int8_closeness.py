"""How close exported int8 files stay to their fp32 reference, judged without the test split.

    python bench/bench_int8_closeness.py --data ../shared/data/pbc_bloodmnist_like_64.npz \\
        --reference edge/weights/cbam_cnn_fp32.tflite \\
        runs/export_raw/cbam_cnn_int8.tflite runs/export_corrected/cbam_cnn_int8.tflite

Every file runs through the device runtime of its format (`.onnx` on onnxruntime, `.tflite` on
LiteRT), on the training images not used for calibration (the class-stratified sample `edgehemo
export --calibration-count COUNT` takes) plus the validation split; each int8 file is compared
with the reference as `bench_int8_calibration.py` compares ONNX variants: top-1 disagreements,
mean KL divergence of the softmax, mean absolute logit difference, 99th percentile of the top-1
margin lost. `--test` adds the test split's disagreements, for a file already chosen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_int8_calibration import closeness

from edgehemo.datasets import ImageSet, align_classes, load_dataset
from edgehemo.device.classifier import Classifier
from edgehemo.export.quantize import calibration_indices
from edgehemo.preprocess import normalize

BACKENDS = {".onnx": "cpu", ".tflite": "tflite"}


def logits(classifier: Classifier, images: np.ndarray) -> np.ndarray:
    spec = classifier.manifest.preprocessing
    return np.concatenate([classifier.backend.run(normalize(images[i : i + 64], spec))
                           for i in range(0, len(images), 64)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("int8", nargs="+", type=Path, help="int8 .onnx / .tflite files")
    parser.add_argument("--reference", type=Path, required=True, help="the fp32 file")
    parser.add_argument("--data", type=Path, required=True, help="the model's training data")
    parser.add_argument("--calibration-count", type=int, default=512,
                        help="as given to edgehemo export (its images are left out)")
    parser.add_argument("--test", action="store_true", help="also count test disagreements")
    args = parser.parse_args()

    def load(path: Path) -> Classifier:
        if path.suffix not in BACKENDS:
            raise SystemExit(f"{path}: not an exported model (.onnx or .tflite)")
        return Classifier.load(path, backend=BACKENDS[path.suffix], settings={"threads": 2})

    reference = load(args.reference)
    manifest = reference.manifest

    def split(name: str) -> ImageSet:
        return align_classes(load_dataset(args.data, name, manifest.preprocessing),
                             manifest.classes)

    train, val = split("train"), split("val")
    rest = np.setdiff1d(np.arange(len(train)), calibration_indices(train, args.calibration_count))
    images = np.concatenate([train.images[rest], val.images])
    want = logits(reference, images)
    test = split("test") if args.test else None
    want_test = logits(reference, test.images) if test is not None else None
    print("| int8 file | bias correction | non-test images | differ | KL mean "
          "| mean abs logit diff | margin lost p99 | test differ |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.int8:
        classifier = load(path)
        scores = closeness(want, logits(classifier, images))
        tested = "-"
        if test is not None and want_test is not None:
            flipped = int((logits(classifier, test.images).argmax(1)
                           != want_test.argmax(1)).sum())
            tested = f"{flipped} of {len(test)}"
        corrected = (classifier.manifest.calibration or {}).get("bias_correction", "none")
        print(f"| {path} | {corrected} | {scores['images']} | {scores['differ']} "
              f"| {scores['kl_mean']:.2e} | {scores['logit_diff']:.4f} "
              f"| {scores['margin_lost_p99']:.3f} | {tested} |", flush=True)


if __name__ == "__main__":
    main()
