"""ONNX -> TFLite fp32 and full-integer int8, through onnx2tf in its own environment.

onnx2tf pins TensorFlow 2.19, numpy 1.26 and onnx 1.19, which conflict with the main
environment, so it runs as a subprocess of a separate virtual environment (`make tflite-env`,
pinned in export/tflite-requirements.txt). Everything it needs is written beside it first:
the calibration images (real training images through the shared preprocessing) and the sample
file it would otherwise try to download, so the conversion works offline.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgehemo.datasets import ImageSet
from edgehemo.errors import EdgehemoError
from edgehemo.export.bias_correction import BiasShift
from edgehemo.manifest import TensorSpec
from edgehemo.preprocess import PreprocessSpec, normalize
from edgehemo.store.atomic import write_atomically

logger = logging.getLogger(__name__)

CONVERTER_ENV = "EDGEHEMO_TFLITE_PYTHON"
# onnx2tf looks for this file in its working directory and downloads it when it is absent.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
CONVERSION_TIMEOUT_S = 1800


class ConverterError(EdgehemoError):
    """The TFLite converter is missing or failed."""


def converter_python() -> Path:
    """The Python of the converter environment; ConverterError says how to create it."""
    configured = os.environ.get(CONVERTER_ENV)
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parents[1] / ".venv-tflite" / "bin" / "python")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConverterError(
        "TFLite export needs the converter environment (onnx2tf + TensorFlow, about 2.6 GB, "
        "created once): run `make tflite-env` in the edgehemo checkout, or point "
        f"{CONVERTER_ENV} at the python of an environment with export/tflite-requirements.txt"
    )


def _write_inputs(workdir: Path, batch: np.ndarray, calibration: ImageSet) -> Path:
    import cv2

    calibration_file = workdir / "calibration.npy"
    np.save(calibration_file, batch)
    sample = np.stack([cv2.resize(image, (128, 128), interpolation=cv2.INTER_LINEAR)
                       for image in calibration.images[:20]]).astype(np.float32) / 255.0
    np.save(workdir / ONNX2TF_SAMPLE, sample)
    return calibration_file


def convert(onnx_path: Path, calibration: ImageSet, spec: PreprocessSpec,
            fp32_out: Path | None, int8_out: Path | None, *, input_name: str = "input",
            bias_correction: bool = True,
            progress: Callable[[str], None] | None = None) -> list[BiasShift]:
    """Convert the ONNX graph traced for TFLite (`attention_graph("tflite")`) to TFLite files;
    writes the requested outputs atomically.

    Unless `bias_correction` is False, the int8 model's biases are then corrected against the
    fp32 model on the calibration images (`tflite_bias_correction.py`; `progress` is told when
    that starts); returns the corrections.
    """
    python = converter_python()
    batch = np.ascontiguousarray(normalize(calibration.images, spec).transpose(0, 2, 3, 1),
                                 dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgehemo-tflite-") as tmp:
        workdir = Path(tmp)
        calibration_file = _write_inputs(workdir, batch, calibration)
        command = [
            str(python), "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(workdir / "out"),
            "-b", "1", "-oiqt", "-qt", "per-channel", "-iqd", "int8", "-oqd", "int8",
            "-cind", input_name, str(calibration_file), "[[[[0,0,0]]]]", "[[[[1,1,1]]]]", "-n",
        ]
        logger.info("running %s", " ".join(command))
        try:
            result = subprocess.run(command, cwd=workdir, capture_output=True, text=True,
                                    timeout=CONVERSION_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as error:
            raise ConverterError(f"onnx2tf ran over {CONVERSION_TIMEOUT_S} s") from error
        stem = onnx_path.stem
        produced = {"fp32": workdir / "out" / f"{stem}_float32.tflite",
                    "int8": workdir / "out" / f"{stem}_full_integer_quant.tflite"}
        if result.returncode != 0 or not all(p.is_file() for p in produced.values()):
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ConverterError(f"onnx2tf failed (exit {result.returncode}):\n{tail}")
        if fp32_out is not None:
            write_atomically(fp32_out, produced["fp32"].read_bytes())
        shifts: list[BiasShift] = []
        if int8_out is not None:
            int8 = produced["int8"].read_bytes()
            if bias_correction:
                from edgehemo.export.tflite_bias_correction import correct_tflite_biases

                if progress is not None:
                    progress("correcting the int8 TFLite biases on the calibration images")
                try:
                    int8, shifts = correct_tflite_biases(produced["fp32"].read_bytes(), int8,
                                                         batch)
                except ValueError as error:  # a converter whose two files differ in layers
                    logger.warning("%s left as the converter wrote it: %s", int8_out.name, error)
            write_atomically(int8_out, int8)
    return shifts


def _interpreter(path: Path):
    from edgehemo.device.backends.litert import load_interpreter_module

    module, _ = load_interpreter_module()
    resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = module.Interpreter(model_path=str(path),
                                     experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def tensor_specs(path: Path) -> tuple[TensorSpec, TensorSpec]:
    """Input and output of a TFLite model as the manifest records them (NHWC)."""
    interpreter = _interpreter(path)
    specs = []
    for detail, layout in ((interpreter.get_input_details()[0], "NHWC"),
                           (interpreter.get_output_details()[0], "")):
        dtype = np.dtype(detail["dtype"]).name
        scale, zero_point = detail["quantization"]
        quantized = dtype in ("int8", "uint8")
        specs.append(TensorSpec(
            name=detail["name"], shape=[int(d) for d in detail["shape"]], dtype=dtype,
            layout=layout, scale=float(scale) if quantized else None,
            zero_point=int(zero_point) if quantized else None,
        ))
    return specs[0], specs[1]


def operator_summary(path: Path) -> tuple[dict[str, int], list[str]]:
    """Operator counts, and the operators that touch a float tensor (must be empty for int8)."""
    interpreter = _interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    counts: Counter[str] = Counter()
    float_ops: list[str] = []
    for op in interpreter._get_ops_details():  # the only listing LiteRT offers
        counts[op["op_name"]] += 1
        indices = [i for i in (*op["inputs"], *op["outputs"]) if i >= 0]
        if any(np.dtype(tensors[i]["dtype"]) == np.float32 for i in indices):
            float_ops.append(f"{op['op_name']}#{op['index']}")
    return dict(sorted(counts.items())), float_ops
