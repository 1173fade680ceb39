"""Batch augmentations on float images (N, 3, H, W) in 0..1, seeded by a torch.Generator.

The papers use flips, rotations, brightness/contrast and colour jitter (HemoNet also inverts
images). The `field` preset adds what differs between a lab's analyser and a clinic's microscope
camera: stain variation in the haematoxylin-eosin-DAB optical-density space (Tellez et al. 2019),
white balance, exposure and gamma, defocus blur, sensor noise, and a wider range of scale (the
cell's size in the crop changes with magnification and with the cell finder). `field_hue` also
changes each channel's absorbance on its own: a stain of another colour; `field_zoom` also varies
the cell's size far more (0.65-1.6 times), so that size stops standing for type.
Everything is drawn from the generator passed in, so a run is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from edgehemo.views import TtaMode


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply and how strongly; zero disables one."""

    dihedral: bool = True  # flips and 90-degree rotations: exact, no interpolation
    affine_p: float = 0.0  # probability of a small rotation/scale/shift
    rotate_deg: float = 15.0
    scale: float = 0.1
    zoom: tuple[float, float] | None = None  # instead of scale: the size x log-U(low, high)
    translate: float = 0.06
    brightness: float = 0.0  # multiplicative, +-fraction
    contrast: float = 0.0
    saturation: float = 0.0
    channel_gain: float = 0.0  # independent per-channel gain, a cheap colour-cast jitter
    invert_p: float = 0.0
    hed_p: float = 0.0  # probability of a stain jitter in optical-density (HED) space
    hed_scale: float = 0.0  # each stain's amount x U(1-s, 1+s)
    hed_shift: float = 0.0  # each stain's amount + U(-b, b)
    absorbance_p: float = 0.0  # probability of a per-channel absorbance (stain hue) change
    absorbance_range: tuple[float, float] = (0.05, 1.3)  # each channel's OD x log-U(low, high)
    gamma: float = 0.0  # exposure curve: x ** U(1-g, 1+g)
    blur_p: float = 0.0  # probability of a Gaussian defocus blur
    blur_sigma: float = 1.0  # its largest sigma, in pixels
    noise_p: float = 0.0  # probability of Gaussian sensor noise
    noise_std: float = 0.03  # its largest standard deviation (0..1 scale)


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(dihedral=False),
    "flips": AugmentConfig(),
    "paper": AugmentConfig(brightness=0.1, contrast=0.1),
    "strong": AugmentConfig(
        affine_p=0.5, brightness=0.1, contrast=0.1, saturation=0.1, channel_gain=0.03
    ),
    "hemonet": AugmentConfig(brightness=0.2, invert_p=0.1),
    "field": AugmentConfig(
        affine_p=0.7, scale=0.25, translate=0.08, brightness=0.2, contrast=0.2, saturation=0.3,
        channel_gain=0.12, hed_p=0.8, hed_scale=0.3, hed_shift=0.05, gamma=0.3, blur_p=0.3,
        blur_sigma=1.2, noise_p=0.3, noise_std=0.03,
    ),
}
# field, plus stains whose colour differs from PBC's: each channel's absorbance scaled on its
# own, down to the nucleus absorbing almost no blue (as in BCCD's frames: docs/robustness.md)
PRESETS["field_hue"] = replace(PRESETS["field"], absorbance_p=0.5)
# field_hue, with the cell's size in the crop varied much more: another lab's tight crop, framed
# around its nucleus, shows a lymphocyte larger than PBC's (docs/robustness.md), and a model
# trained at one magnification takes size for type
PRESETS["field_zoom"] = replace(PRESETS["field_hue"], affine_p=0.8, zoom=(0.65, 1.6))

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB) in optical density.
_HED_FROM_RGB = torch.linalg.inv(torch.tensor([
    [0.65, 0.70, 0.29],
    [0.07, 0.99, 0.11],
    [0.27, 0.57, 0.78],
]))
_RGB_FROM_HED = torch.linalg.inv(_HED_FROM_RGB)


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
    if config.zoom is None:
        scale = _uniform(k, 1 - config.scale, 1 + config.scale, generator)
    else:
        low, high = config.zoom
        scale = torch.exp(_uniform(k, math.log(low), math.log(high), generator))
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


def _chosen(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) < p).nonzero(as_tuple=True)[0]


def _stain(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Scale and shift each stain's optical density, as a different staining would."""
    chosen = _chosen(x.shape[0], config.hed_p, generator)
    if chosen.numel() == 0:
        return x
    k = chosen.numel()
    od = -torch.log(x[chosen].clamp_min(1 / 255))  # (k, 3, H, W)
    hed = torch.einsum("kchw,cs->kshw", od, _HED_FROM_RGB)
    alpha = _uniform(3 * k, 1 - config.hed_scale, 1 + config.hed_scale, generator).view(k, 3, 1, 1)
    beta = _uniform(3 * k, -config.hed_shift, config.hed_shift, generator).view(k, 3, 1, 1)
    od = torch.einsum("kshw,sc->kchw", hed * alpha + beta, _RGB_FROM_HED)
    out = x.clone()
    out[chosen] = torch.exp(-od).clamp(0.0, 1.0)
    return out


def _absorbance(x: torch.Tensor, config: AugmentConfig,
                generator: torch.Generator) -> torch.Tensor:
    """Scale each channel's optical density against the image's background by its own factor:
    a stain of another hue, or a camera that sees it through other filters."""
    chosen = _chosen(x.shape[0], config.absorbance_p, generator)
    if chosen.numel() == 0:
        return x
    k = chosen.numel()
    part = x[chosen]
    background = part.flatten(2).quantile(0.95, dim=2).clamp_min(1 / 255).view(k, 3, 1, 1)
    low, high = config.absorbance_range
    exponent = torch.exp(_uniform(3 * k, math.log(low), math.log(high), generator)).view(k, 3, 1, 1)
    out = x.clone()
    out[chosen] = background * (part / background).clamp(1 / 255, 1.0) ** exponent
    return out


def _gamma(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    exponent = _uniform(n, 1 - config.gamma, 1 + config.gamma, generator).view(n, 1, 1, 1)
    return x.clamp_min(1e-6) ** exponent


def _blur(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    chosen = _chosen(x.shape[0], config.blur_p, generator)
    if chosen.numel() == 0:
        return x
    out = x.clone()
    radius = max(1, math.ceil(2 * config.blur_sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    for index, sigma in zip(chosen.tolist(),
                            _uniform(chosen.numel(), 0.3, config.blur_sigma, generator).tolist(),
                            strict=True):
        kernel = torch.exp(-(taps**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        image = F.pad(x[index : index + 1], (radius, radius, radius, radius), mode="reflect")
        image = F.conv2d(image, kernel.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
        image = F.conv2d(image, kernel.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
        out[index] = image[0]
    return out


def _noise(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    chosen = _chosen(x.shape[0], config.noise_p, generator)
    if chosen.numel() == 0:
        return x
    k = chosen.numel()
    std = _uniform(k, 0.0, config.noise_std, generator).view(k, 1, 1, 1)
    out = x.clone()
    noise = torch.randn(x[chosen].shape, generator=generator, dtype=x.dtype)
    out[chosen] = (x[chosen] + noise * std).clamp(0.0, 1.0)
    return out


def augment(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply the configured augmentations to a batch of float images in 0..1."""
    if config.dihedral:
        x = _dihedral(x, generator)
    if config.affine_p > 0:
        x = _affine(x, config, generator)
    if config.hed_p > 0:
        x = _stain(x, config, generator)
    if config.absorbance_p > 0:
        x = _absorbance(x, config, generator)
    if config.gamma > 0:
        x = _gamma(x, config, generator)
    x = _colour(x, config, generator)
    if config.blur_p > 0:
        x = _blur(x, config, generator)
    if config.noise_p > 0:
        x = _noise(x, config, generator)
    if config.invert_p > 0:
        flip = torch.rand(x.shape[0], generator=generator) < config.invert_p
        x = torch.where(flip.view(-1, 1, 1, 1), 1.0 - x, x)
    return x


def views_for_augmentation(augment: str) -> TtaMode:
    """The test-time views a model trained with the `augment` preset answers best under
    (`PreprocessSpec.test_views`): stain hues only where training varied them."""
    return "stain" if PRESETS[augment].absorbance_p > 0 else "mirror"
