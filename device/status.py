"""The daemon's live status: a small JSON file in the state directory, rewritten atomically about
once a second, which `edgehemo status` reads (no socket, no network: works under PrivateNetwork)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from edgehemo.store.atomic import write_atomically

STATUS_NAME = "status.json"
STALE_AFTER_S = 15.0


def write_status(state_dir: Path, status: dict[str, Any]) -> None:
    status = {**status, "pid": os.getpid(), "updated": time.time()}
    write_atomically(state_dir / STATUS_NAME, (json.dumps(status, indent=1) + "\n").encode())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by the service user
        return True
    return True


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last status written, with `running` saying whether that process is still alive."""
    path = state_dir / STATUS_NAME
    try:
        status = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    age = time.time() - float(status.get("updated", 0))
    status["age_s"] = round(age, 1)
    status["running"] = bool(
        status.get("active") and _alive(int(status.get("pid", -1))) and age < STALE_AFTER_S
    )
    return status
