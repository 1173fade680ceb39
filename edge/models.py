"""Names to files: the weights shipped in the package and checkpoints given by path.

No torch here: resolving a name and reading its card works on a device install.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgehemo.cards import ModelCard, card_path_for, read_card
from edgehemo.errors import ModelNotFoundError
from edgehemo.manifest import ArtifactManifest, manifest_path_for, read_manifest

ARTIFACT_SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite"}
MODELS_DIR_ENV = "EDGEHEMO_MODELS_DIR"
DEFAULT_MODELS_DIR = Path("/var/lib/edgehemo/models")


def user_models_dir() -> Path:
    """Where a user's own exported models live: $EDGEHEMO_MODELS_DIR, else the service's
    state directory. Models there win over shipped models of the same name."""
    return Path(os.environ.get(MODELS_DIR_ENV, DEFAULT_MODELS_DIR))


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
            "views": self.card.preprocessing.test_views,
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


@dataclass(frozen=True)
class Artifact:
    """An exported model file with its manifest."""

    name: str
    path: Path
    manifest: ArtifactManifest

    def summary(self) -> dict[str, Any]:
        test = self.manifest.metrics.get("test", {})
        return {
            "name": self.name,
            "format": self.manifest.format,
            "precision": self.manifest.precision,
            "architecture": self.manifest.architecture,
            "bytes": self.manifest.bytes,
            "test_accuracy": test.get("accuracy"),
            "views": self.manifest.preprocessing.test_views,
            "path": str(self.path),
        }


def _search_dirs(models_dir: Path | None) -> list[Path]:
    return [models_dir if models_dir is not None else user_models_dir(), shipped_weights_dir()]


def list_artifacts(models_dir: Path | None = None) -> list[Artifact]:
    """Exported artifacts with manifests, user models directory first, then shipped ones."""
    found: dict[tuple[str, str], Artifact] = {}
    for directory in _search_dirs(models_dir):
        if not directory.is_dir():
            continue
        for suffix in ARTIFACT_SUFFIXES.values():
            for path in sorted(directory.glob(f"*{suffix}")):
                manifest_file = manifest_path_for(path)
                key = (path.stem, suffix)
                if manifest_file.is_file() and key not in found:
                    found[key] = Artifact(path.stem, path, read_manifest(manifest_file))
    return sorted(found.values(), key=lambda a: (a.name, a.manifest.format))


def resolve_artifact(
    name_or_path: str | Path,
    *,
    formats: tuple[str, ...] = ("onnx", "tflite"),
    models_dir: Path | None = None,
) -> Artifact:
    """An artifact name (`cbam_cnn_int8`) or path -> file and manifest, in a format the
    caller's backend runs; the user models directory wins over the shipped models."""
    candidate = Path(name_or_path)
    if candidate.suffix in ARTIFACT_SUFFIXES.values():
        if not candidate.is_file():
            raise ModelNotFoundError(f"{candidate}: no such model file")
        manifest = read_manifest(manifest_path_for(candidate))
        if manifest.format not in formats:
            raise ModelNotFoundError(
                f"{candidate}: its format is {manifest.format}; this backend runs "
                f"{', '.join(formats)}: run it with --backend {_backend_for([manifest.format])}"
            )
        return Artifact(candidate.stem, candidate, manifest)
    if candidate.suffix and candidate.is_file():
        raise ModelNotFoundError(
            f"{candidate}: not an exported model (an .onnx or .tflite file with its manifest "
            "beside it, or a model name from `edgehemo models`)")
    available = list_artifacts(models_dir)
    for artifact in available:
        if artifact.name == str(name_or_path) and artifact.manifest.format in formats:
            return artifact
    other = [a.manifest.format for a in available if a.name == str(name_or_path)]
    if other:
        raise ModelNotFoundError(
            f"{name_or_path} exists only as {', '.join(other)}; this backend runs "
            f"{', '.join(formats)}: run it with --backend {_backend_for(other)}, or export it as "
            f"{formats[0]} with `edgehemo export`"
        )
    names = sorted({a.name for a in available})
    close = difflib.get_close_matches(str(name_or_path), names, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"no exported model named {str(name_or_path)!r}.{hint} Available: "
        f"{', '.join(names) or 'none'}"
    )


def _backend_for(formats: list[str]) -> str:
    """The CPU backend that runs one of `formats`, for an error's hint."""
    return "tflite" if "tflite" in formats else "cpu"


def is_artifact_name(name_or_path: str | Path, models_dir: Path | None = None) -> bool:
    """True when `name_or_path` names an exported artifact rather than torch weights."""
    if Path(name_or_path).suffix in ARTIFACT_SUFFIXES.values():
        return True
    return any(a.name == str(name_or_path) for a in list_artifacts(models_dir))


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
