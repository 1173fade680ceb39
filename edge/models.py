"""Names to files: the weights shipped in the package and checkpoints given by path.

No torch here: resolving a name and reading its card works on a device install.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgehemo.cards import ModelCard, card_path_for, read_card
from edgehemo.errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelWeights:
    """A checkpoint file with its model card."""

    name: str
    checkpoint: Path
    card: ModelCard

    def summary(self) -> dict[str, Any]:
        test = self.card.metrics.get("test", {})
        return {
            "name": self.name,
            "architecture": self.card.architecture,
            "input_size": self.card.input_size,
            "num_params": self.card.num_params,
            "bytes": self.checkpoint.stat().st_size,
            "test_accuracy": test.get("accuracy"),
            "classes": list(self.card.classes),
            "path": str(self.checkpoint),
        }


def shipped_weights_dir() -> Path:
    """Folder of the weights installed with the package."""
    return Path(str(resources.files("edgehemo.weights")))


def list_shipped() -> list[ModelWeights]:
    """Every shipped checkpoint that has a card, sorted by name."""
    found = []
    for checkpoint in sorted(shipped_weights_dir().glob("*.pt")):
        card_file = card_path_for(checkpoint)
        if card_file.is_file():
            found.append(ModelWeights(checkpoint.stem, checkpoint, read_card(card_file)))
    return found


def resolve_weights(name_or_path: str | Path) -> ModelWeights:
    """A shipped name (e.g. `cbam_cnn`) or a path to a `.pt` checkpoint -> file and card."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".pt" or candidate.exists():
        if not candidate.is_file():
            raise ModelNotFoundError(f"{candidate}: no such checkpoint file")
        return ModelWeights(candidate.stem, candidate, read_card(card_path_for(candidate)))
    shipped = {weights.name: weights for weights in list_shipped()}
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    close = difflib.get_close_matches(str(name_or_path), shipped, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"no weights named {str(name_or_path)!r}.{hint} Shipped: {', '.join(shipped) or 'none'}; "
        "or pass a checkpoint path (.pt with its .json card)."
    )


def list_architectures() -> list[dict[str, Any]] | None:
    """Registered architectures with parameter counts, or None when torch is not installed."""
    try:
        from edgehemo.train.registry import count_parameters, create_model, list_models, model_info
    except ImportError:
        return None
    rows = []
    for name in list_models():
        info = model_info(name)
        rows.append({
            "name": name,
            "family": info.family,
            "input_size": info.input_size,
            "num_params": count_parameters(create_model(name)),
            "paper": info.paper,
        })
    return rows
