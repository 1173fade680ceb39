"""Named training recipes: the papers' own and the one that gives the shipped weights.

A recipe is a set of defaults; every value can be overridden on the command line.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # "Efficient Deep Learning Architectures...": Adam 1e-3, lr x0.9 per epoch.
    "paper-adam": {
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "exponential",
        "gamma": 0.9,
        "epochs": 10,
        "batch_size": 64,
        "augment": "paper",
        "label_smoothing": 0.0,
        "ema": 0.0,
        "patience": 0,
    },
    # HemoNet: SGD momentum 0.5, lr 1e-4, weight decay 1e-4, batch 40, early stopping patience 5,
    # learning rate "mutated" by a factor 1.2 when validation stagnates.
    "hemonet-sgd": {
        "optimizer": "sgd",
        "lr": 1e-4,
        "momentum": 0.5,
        "weight_decay": 1e-4,
        "schedule": "mutation",
        "gamma": 1.2,
        "epochs": 50,
        "batch_size": 40,
        "augment": "hemonet",
        "label_smoothing": 0.0,
        "ema": 0.0,
        "patience": 5,
    },
    # ReduceLROnPlateau variant used by several blood-cell papers.
    "plateau": {
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "plateau",
        "gamma": 0.5,
        "epochs": 40,
        "batch_size": 64,
        "augment": "flips",
        "label_smoothing": 0.0,
        "ema": 0.0,
        "patience": 10,
    },
    # The shipped weights: AdamW + one-cycle, label smoothing, EMA of the weights, strong but
    # label-preserving augmentation.
    "edgehemo": {
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "schedule": "onecycle",
        "gamma": 0.0,
        "epochs": 40,
        "batch_size": 128,
        "augment": "strong",
        "label_smoothing": 0.1,
        "ema": 0.998,
        "patience": 0,
    },
    # Adapting trained weights to a new site from a few dozen labelled crops per class.
    "finetune": {
        "optimizer": "adamw",
        "lr": 3e-4,
        "weight_decay": 0.01,
        "schedule": "onecycle",
        "gamma": 0.0,
        "epochs": 15,
        "batch_size": 64,
        "augment": "field",
        "label_smoothing": 0.1,
        "ema": 0.0,
        "patience": 0,
    },
}


def recipe(name: str) -> dict[str, Any]:
    """A copy of the recipe `name`; ValueError lists the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return dict(RECIPES[name])
