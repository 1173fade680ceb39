"""The tflite backend's float -> int8 input conversion: OpenCV on the channel planes against numpy
on the transposed batch, alone and as part of a whole `run()`.

    python bench/bench_litert_input.py [--model cbam_cnn_int8] [--batch 1]

One run, all timings in alternating rounds (1 thread, a fixed random float NCHW batch): the
conversion each way, then `run()` as the backend does it (OpenCV) and with the numpy conversion,
and the bare `invoke()`. Prints median microseconds per call.
"""

from __future__ import annotations

import argparse

import numpy as np

from edgehemo.device.backends.litert import model_input, nhwc_model_input
from edgehemo.device.classifier import Classifier
from edgehemo.export.benchmark import interleaved_median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cbam_cnn_int8")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3000)
    args = parser.parse_args()
    backend = Classifier.load(args.model, backend="tflite", settings={"threads": 1}).backend
    detail = backend._input
    size = int(detail["shape"][1])
    batch = np.random.default_rng(0).standard_normal((args.batch, 3, size, size))
    batch = batch.astype(np.float32)

    def run_with_numpy() -> np.ndarray:
        converted = model_input(batch.transpose(0, 2, 3, 1), detail)
        return np.concatenate([backend._invoke(image[None]) for image in converted])

    timed = {
        "convert, OpenCV": lambda: nhwc_model_input(batch, detail),
        "convert, numpy": lambda: model_input(batch.transpose(0, 2, 3, 1), detail),
        "run(), OpenCV": lambda: backend.run(batch),
        "run(), numpy": run_with_numpy,
        "invoke() alone": backend.interpreter.invoke,
    }
    timings = interleaved_median_ms(list(timed.values()), repeats=args.repeats, rounds=30)
    print(f"{args.model}, batch {args.batch} ({detail['dtype'].__name__} input):")
    for name, ms in zip(timed, timings, strict=True):
        print(f"  {name:16} {1000 * ms:9.1f} us")


if __name__ == "__main__":
    main()
