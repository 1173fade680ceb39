"""Batch augmentations on float images (N, 3, H, W) in 0..1, seeded by a torch.Generator.

The papers use flips, rotations, brightness/contrast and colour jitter (HemoNet also inverts
images). Everything is drawn from the generator passed in, so a run is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply and how strongly; zero disables one."""

    dihedral: bool = True  # flips and 90-degree rotations: exact, no interpolation
    affine_p: float = 0.0  # probability of a small rotation/scale/shift
    rotate_deg: float = 15.0
    scale: float = 0.1
    translate: float = 0.06
    brightness: float = 0.0  # multiplicative, +-fraction
    contrast: float = 0.0
    saturation: float = 0.0
    channel_gain: float = 0.0  # independent per-channel gain, a cheap colour-cast jitter
    invert_p: float = 0.0


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(dihedral=False),
    "flips": AugmentConfig(),
    "paper": AugmentConfig(brightness=0.1, contrast=0.1),
    "strong": AugmentConfig(
        affine_p=0.5, brightness=0.1, contrast=0.1, saturation=0.1, channel_gain=0.03
    ),
    "hemonet": AugmentConfig(brightness=0.2, invert_p=0.1),
}


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    ops = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = x.clone()
    for op in range(1, 8):
        chosen = (ops == op).nonzero(as_tuple=True)[0]
        if chosen.numel() == 0:
            continue
        part = torch.rot90(x[chosen], k=op % 4, dims=(2, 3))
        out[chosen] = part.flip(3) if op >= 4 else part
    return out


def _affine(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    chosen = (torch.rand(n, generator=generator) < config.affine_p).nonzero(as_tuple=True)[0]
    if chosen.numel() == 0:
        return x
    k = chosen.numel()
    angle = _uniform(k, -config.rotate_deg, config.rotate_deg, generator) * math.pi / 180
    scale = _uniform(k, 1 - config.scale, 1 + config.scale, generator)
    shift = _uniform(2 * k, -config.translate, config.translate, generator).view(k, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x[chosen].shape), align_corners=False)
    out = x.clone()
    out[chosen] = F.grid_sample(
        x[chosen], grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return out


def _colour(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    if config.brightness:
        factor = _uniform(n, 1 - config.brightness, 1 + config.brightness, generator)
        x = x * factor.view(n, 1, 1, 1)
    if config.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        factor = _uniform(n, 1 - config.contrast, 1 + config.contrast, generator).view(n, 1, 1, 1)
        x = (x - mean) * factor + mean
    if config.saturation:
        grey = x.mean(dim=1, keepdim=True)
        factor = _uniform(n, 1 - config.saturation, 1 + config.saturation, generator)
        x = (x - grey) * factor.view(n, 1, 1, 1) + grey
    if config.channel_gain:
        gain = _uniform(3 * n, 1 - config.channel_gain, 1 + config.channel_gain, generator)
        x = x * gain.view(n, 3, 1, 1)
    return x.clamp_(0.0, 1.0)


def augment(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply the configured augmentations to a batch of float images in 0..1."""
    if config.dihedral:
        x = _dihedral(x, generator)
    if config.affine_p > 0:
        x = _affine(x, config, generator)
    x = _colour(x, config, generator)
    if config.invert_p > 0:
        flip = torch.rand(x.shape[0], generator=generator) < config.invert_p
        x = torch.where(flip.view(-1, 1, 1, 1), 1.0 - x, x)
    return x
