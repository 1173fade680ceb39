"""Checkpoint -> ONNX fp32, verified against torch on real images."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgehemo.errors import CheckpointError
from edgehemo.store.atomic import write_atomically

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, input_size: int, path: Path) -> None:
    """Export `model` (eval mode) with a dynamic batch axis; written atomically."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, input_size, input_size)
    buffer = io.BytesIO()
    # The TorchScript exporter: it needs no onnxscript and gives a plain graph of standard ops
    # for these conv nets, which is what the quantiser and the runtimes handle best.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    write_atomically(path, buffer.getvalue())


def operator_summary(path: Path) -> dict[str, int]:
    """Count of each operator type in an ONNX graph."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@torch.no_grad()
def max_logit_difference(model: nn.Module, session_logits: np.ndarray, batch: np.ndarray) -> float:
    """Largest absolute difference between torch's logits and an ONNX runtime's on `batch`."""
    reference = model.eval()(torch.from_numpy(batch)).numpy()
    if reference.shape != session_logits.shape:
        raise CheckpointError(
            f"exported model gives shape {session_logits.shape}, torch {reference.shape}"
        )
    return float(np.abs(reference - session_logits).max())
