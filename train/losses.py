"""Losses: cross-entropy with optional label smoothing, and focal loss (Lin et al., 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Focal loss: cross-entropy down-weighted by (1 - p_t)^gamma, scaled by alpha."""

    def __init__(self, *, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, target.view(-1, 1)).squeeze(1)
        weight = (1.0 - log_p.exp()).pow(self.gamma)
        return (-self.alpha * weight * log_p).mean()


def make_loss(
    name: str, *, label_smoothing: float = 0.0, alpha: float = 0.25, gamma: float = 2.0
) -> nn.Module:
    """Build the loss named `name` ('ce' or 'focal')."""
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(alpha=alpha, gamma=gamma)
    raise ValueError(f"unknown loss {name!r}; expected 'ce' or 'focal'")
