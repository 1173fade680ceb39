"""Pydantic models stored as JSON files beside the file they describe (cards, manifests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from edgehemo.errors import CheckpointError
from edgehemo.store.atomic import write_atomically

Model = TypeVar("Model", bound=BaseModel)


def read_json_model(path: str | Path, model: type[Model], what: str, needed_by: str) -> Model:
    """Read and validate `path`; CheckpointError names the file, what it is and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found (every {needed_by} needs its .json)")
    try:
        return model.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({error})") from error
    except ValidationError as error:
        raise CheckpointError(f"{path}: invalid {what}:\n{error}") from error


def write_json_model(value: BaseModel, path: str | Path) -> None:
    """Write atomically, pretty-printed."""
    write_atomically(path, (value.model_dump_json(indent=2) + "\n").encode())
