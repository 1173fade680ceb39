"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021), for training only.

Early feature maps carry an image's "style" (stain, camera, exposure) in their per-channel means
and deviations. With probability `p` per batch, each image's early features are re-styled with a
random mix of its own statistics and another image's: the classifier then sees styles between
the training images' and must decide by the content. The network is unchanged (no parameter,
nothing at inference): it is a forward hook on the first stages that acts only in training mode.
The draws come from a numpy generator seeded by the run's seed, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

EPS = 1e-6


class MixStyle:
    """Forward hook: re-style a training batch's feature maps (N, C, H, W)."""

    def __init__(self, p: float, alpha: float, rng: np.random.Generator) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"mixstyle probability must be within 0..1, got {p}")
        if alpha <= 0:
            raise ValueError(f"mixstyle alpha must be positive, got {alpha}")
        self.p, self.alpha, self.rng = p, alpha, rng

    def __call__(self, module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        n = output.shape[0]
        if not module.training or n < 2 or self.rng.random() >= self.p:
            return output
        x = output.float()
        mean = x.mean(dim=(2, 3), keepdim=True).detach()
        std = (x.var(dim=(2, 3), keepdim=True) + EPS).sqrt().detach()
        weight = torch.from_numpy(self.rng.beta(self.alpha, self.alpha, n).astype(np.float32))
        weight = weight.view(n, 1, 1, 1).to(x.device)
        other = torch.from_numpy(self.rng.permutation(n)).to(x.device)
        mixed_mean = weight * mean + (1 - weight) * mean[other]
        mixed_std = weight * std + (1 - weight) * std[other]
        return ((x - mean) / std * mixed_std + mixed_mean).to(output.dtype)


def attach_mixstyle(model: nn.Module, p: float, *, seed: int, alpha: float = 0.1,
                    stages: int = 2) -> list[RemovableHandle]:
    """Hook MixStyle onto the outputs of the first `stages` stages of `model.features` (the
    papers' conv stages); returns the handles (`handle.remove()` takes it off)."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential) or len(features) <= stages:
        raise ValueError(f"mixstyle needs a model whose .features holds more than {stages} "
                         f"stages; {type(model).__name__} has none")
    hook = MixStyle(p, alpha, np.random.default_rng([seed, 0x4D5]))
    return [features[i].register_forward_hook(hook) for i in range(stages)]
