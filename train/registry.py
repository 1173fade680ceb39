"""Model registry: builders register under their function name, `create_model` builds by name."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from edgehemo.errors import EdgehemoError

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about an architecture without building it."""

    name: str
    builder: ModelBuilder
    input_size: int
    family: str
    paper: str


_REGISTRY: dict[str, ModelInfo] = {}


class UnknownModelError(EdgehemoError, KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_model(
    *, input_size: int, family: str, paper: str = ""
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under its own function name; a duplicate name is refused."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, builder, input_size, family, paper)
        return builder

    return decorator


def _ensure_zoo_loaded() -> None:
    from edgehemo.train import zoo  # noqa: F401  (importing registers the builders)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    _ensure_zoo_loaded()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def model_info(name: str) -> ModelInfo:
    """The registry entry for `name`; raises UnknownModelError listing close matches."""
    _ensure_zoo_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model {name!r}.{hint} Known models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model `name`; keyword arguments go to its builder."""
    return model_info(name).builder(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
