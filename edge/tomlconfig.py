"""TOML config files validated by pydantic, with errors that name the key and its line.

    [quality]
    min_focus = "high"     ->  /etc/edgehemo/edgehemo.toml line 2: quality.min_focus: Input
                               should be a valid number
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from edgehemo.errors import EdgehemoError

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(EdgehemoError):
    """A config file or override is malformed, has an unknown key or a bad value."""


def read_toml(path: str | Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text (kept to point errors at their line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from error
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error


def key_line(text: str, location: tuple[str | int, ...]) -> int | None:
    """The line (1-based) where a dotted key is set: `key = ` inside its [table]."""
    keys = [str(part) for part in location]
    if not keys:
        return None
    table, key = keys[:-1], keys[-1]
    current: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]", stripped)
        if header:
            current = [part.strip().strip('"') for part in header.group(1).split(".")]
            if current == keys:
                return number  # a whole table is wrong (e.g. an unknown section)
            continue
        match = re.match(r"([A-Za-z0-9_\-\".]+)\s*=", stripped)
        if match:
            dotted = [part.strip('"') for part in match.group(1).split(".")]
            if current + dotted == keys or (current == table and dotted == [key]):
                return number
    return None


def validate(model: type[Model], data: dict[str, Any], *, source: str = "config",
             text: str | None = None) -> Model:
    """Validate `data`; on failure one ConfigError listing every problem with key and line."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = tuple(item["loc"])
            dotted = ".".join(map(str, location))
            line = key_line(text, location) if text else None
            where = f"{source} line {line}" if line else source
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown key (a typo?)"
            problems.append(f"{where}: {dotted}: {message}")
        raise ConfigError("\n".join(problems)) from error


def load_model(model: type[Model], path: str | Path | None,
               overrides: dict[str, Any] | None = None) -> Model:
    """Read `path` (optional), apply dotted overrides, validate."""
    data: dict[str, Any] = {}
    text = None
    source = "command line"
    if path is not None:
        data, text = read_toml(path)
        source = str(path)
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return validate(model, data, source=source, text=text)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """`--set section.key=value` with the value parsed as TOML (a bare word is a string)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value
