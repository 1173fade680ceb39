"""Model cards: the JSON that travels beside every checkpoint (train -> export).

A card says what the weights are (architecture, classes, input, preprocessing), where they came
from (data, recipe, seed, time) and how good they are (metrics per split). The checkpoint's sha256
is recorded so a card cannot silently describe other weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgehemo.errors import CheckpointError
from edgehemo.jsonfile import read_json_model, write_json_model
from edgehemo.preprocess import PreprocessSpec
from edgehemo.store.atomic import sha256_file

CARD_VERSION = 1


class TrainingRecord(BaseModel):
    """How the weights were trained."""

    model_config = ConfigDict(extra="forbid")

    recipe: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    seed: int
    epochs_run: int
    best_epoch: int
    seconds: float
    seconds_per_epoch: float
    torch_version: str
    threads: int


class ModelCard(BaseModel):
    """Metadata of one trained checkpoint."""

    model_config = ConfigDict(extra="forbid")

    card_version: int = CARD_VERSION
    name: str
    architecture: str
    classes: tuple[str, ...]
    input_size: int
    preprocessing: PreprocessSpec
    num_params: int
    checkpoint_sha256: str = ""
    checkpoint_bytes: int = 0
    data: dict[str, Any] = Field(default_factory=dict)
    training: TrainingRecord | None = None
    metrics: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per split: accuracy, weighted_f1, per-class recall..."
    )
    notes: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def card_path_for(checkpoint: str | Path) -> Path:
    """The card that belongs to a checkpoint: same name, `.json` suffix."""
    return Path(checkpoint).with_suffix(".json")


def read_card(path: str | Path) -> ModelCard:
    """Read and validate a model card. CheckpointError names the file and the problem."""
    return read_json_model(path, ModelCard, "model card", "checkpoint")


def write_card(card: ModelCard, path: str | Path) -> None:
    """Write atomically, pretty-printed."""
    write_json_model(card, path)


def verify_checkpoint(checkpoint: str | Path, card: ModelCard) -> None:
    """Refuse a checkpoint whose sha256 differs from the one its card records."""
    if not card.checkpoint_sha256:
        return
    actual = sha256_file(checkpoint)
    if actual != card.checkpoint_sha256:
        raise CheckpointError(
            f"{checkpoint}: sha256 {actual[:12]}... does not match its card "
            f"({card.checkpoint_sha256[:12]}...): the file is corrupt, truncated or replaced"
        )
