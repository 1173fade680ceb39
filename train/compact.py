"""Smaller checkpoints for shipping: large weight matrices stored as int8 with one scale per row.

HemoNet's 50,176x512 classifier is 25.7M of its 26M parameters (103 MB in fp32). Stored as
symmetric int8 per output row it takes a quarter of that, and the model is rebuilt in fp32 when
loaded, so training, export and evaluation see an ordinary state dict. Only tensors with at least
`min_elements` values are stored this way; convolutions, BatchNorm and biases stay fp32. The
accuracy of the shipped file is measured after compression (scripts/ship_weights.py --compact).
"""

from __future__ import annotations

import torch

INT8_SUFFIX = ".__int8"
SCALE_SUFFIX = ".__scale"


def compress_state(state: dict[str, torch.Tensor], min_elements: int = 1_000_000
                   ) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dim() >= 2 and tensor.numel() >= min_elements:
            rows = tensor.float().reshape(tensor.shape[0], -1)
            scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            out[key + INT8_SUFFIX] = (
                torch.round(rows / scale).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
            )
            out[key + SCALE_SUFFIX] = scale
        else:
            out[key] = tensor
    return out


def expand_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fp32 state dict of a compressed one (an ordinary state dict is returned unchanged)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        if key.endswith(INT8_SUFFIX):
            name = key[: -len(INT8_SUFFIX)]
            scale = state.get(name + SCALE_SUFFIX)
            if scale is None:
                raise KeyError(f"{name}: int8 weights without their scales")
            rows = tensor.reshape(tensor.shape[0], -1).float() * scale
            out[name] = rows.reshape(tensor.shape)
        else:
            out[key] = tensor
    return out
