"""`edgehemo service install`: the systemd unit, its user, directories and a default config.

The units in systemd/ are templates: installing fills in the path of this edgehemo executable.
`--root DIR` stages every file under DIR instead of / (packaging, inspection, tests) and skips
the steps that change the running system (user creation, chown, daemon-reload).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from edgehemo.device.config import CaptureConfig
from edgehemo.errors import EdgehemoError

Platform = Literal["pi", "jetson"]
UNIT_NAME = "edgehemo.service"
SERVICE_USER = "edgehemo"
TEMPLATE_EXEC = "/opt/edgehemo/venv/bin/edgehemo"
TEMPLATE_DOCUMENTATION = "file:///usr/share/doc/edgehemo/deploy.md"
HIDDEN_FROM_SERVICE = (Path("/home"), Path("/root"), Path("/run/user"))


class ServiceError(EdgehemoError):
    """The service cannot be installed as asked (not root, no systemd, bad platform)."""


def unit_template(platform: Platform) -> str:
    return resources.files("edgehemo.systemd").joinpath(f"edgehemo-{platform}.service").read_text()


def deploy_guide() -> Path:
    """The station guide shipped beside the units (systemd/deploy.md), which the unit's
    Documentation= names."""
    return Path(str(resources.files("edgehemo.systemd").joinpath("deploy.md"))).resolve()


def render_unit(platform: Platform, executable: Path) -> str:
    return (unit_template(platform).replace(TEMPLATE_EXEC, str(executable))
            .replace(TEMPLATE_DOCUMENTATION, deploy_guide().as_uri()))


def hidden_from_service(executable: Path) -> Path | None:
    """The directory that hides `executable` from the service (the units set ProtectHome=yes,
    which empties these), or None where the service can run it."""
    return next((hidden for hidden in HIDDEN_FROM_SERVICE
                 if executable == hidden or hidden in executable.parents), None)


def default_config_toml(platform: Platform) -> str:
    """A commented config with every key at its default, as TOML."""
    config = CaptureConfig()
    if platform == "jetson":
        config.capture.backend = "gpu"
        config.capture.model = "cbam_cnn_fp32"
    lines = [
        "# edgehemo capture daemon configuration. Every key is also a command-line flag",
        "# (`edgehemo capture --help`, or --set SECTION.KEY=VALUE). Unknown keys are errors.",
    ]
    for section, value in config.model_dump(mode="json").items():
        lines.append("")
        lines.append(f"[{section}]")
        model = getattr(config, section)
        for key, item in value.items():
            description = ""
            if isinstance(model, BaseModel):
                info = type(model).model_fields.get(key)
                description = info.description or "" if info else ""
            if description:
                lines.append(f"# {description}")
            lines.append(f"{key} = {_toml_value(item)}" if item is not None else f"# {key} =")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


@dataclass
class InstallPlan:
    unit_path: Path
    config_path: Path
    state_dir: Path
    unit_text: str
    config_text: str
    done: list[str] = field(default_factory=list)


def edgehemo_executable() -> Path:
    found = shutil.which("edgehemo") or str(Path(sys.executable).with_name("edgehemo"))
    return Path(found).resolve()


def install(platform: Platform, *, root: Path | None = None,
            executable: Path | None = None) -> InstallPlan:
    """Write unit, config and directories; on the live system also the user and daemon-reload."""
    if platform not in ("pi", "jetson"):
        raise ServiceError(f"unknown platform {platform!r}: pi or jetson")
    live = root is None
    base = Path("/") if root is None else root
    executable = executable or edgehemo_executable()
    hidden = hidden_from_service(executable)
    hidden_warning = (
        f"{executable} is under {hidden}, which the service cannot see (its unit sets "
        "ProtectHome=yes): install edgehemo under /opt (`sudo sh bundle/install.sh "
        "/opt/edgehemo`, systemd/deploy.md) and run `service install` from there"
    ) if hidden is not None else ""
    if live and hidden_warning:
        raise ServiceError(hidden_warning)
    if live and os.geteuid() != 0:
        raise ServiceError("installing the service needs root: run it with sudo "
                           "(or --root DIR to stage the files elsewhere)")
    if live and shutil.which("systemctl") is None:
        raise ServiceError("systemctl not found: this system does not run systemd")
    plan = InstallPlan(
        unit_path=base / "etc/systemd/system" / UNIT_NAME,
        config_path=base / "etc/edgehemo/edgehemo.toml",
        state_dir=base / "var/lib/edgehemo",
        unit_text=render_unit(platform, executable),
        config_text=default_config_toml(platform),
    )
    if hidden_warning:  # staged for inspection: said, not refused
        plan.done.append(f"warning: {hidden_warning}")
    if live:
        _ensure_user(plan)
    plan.unit_path.parent.mkdir(parents=True, exist_ok=True)
    plan.unit_path.write_text(plan.unit_text)
    plan.done.append(f"wrote {plan.unit_path}")
    plan.config_path.parent.mkdir(parents=True, exist_ok=True)
    if plan.config_path.exists():
        plan.done.append(f"kept the existing {plan.config_path}")
    else:
        plan.config_path.write_text(plan.config_text)
        plan.done.append(f"wrote {plan.config_path}")
    for directory in (plan.state_dir, plan.state_dir / "models"):
        directory.mkdir(parents=True, exist_ok=True)
        if live:
            shutil.chown(directory, SERVICE_USER, SERVICE_USER)
            directory.chmod(0o750)
    plan.done.append(f"created {plan.state_dir} (results) and {plan.state_dir / 'models'}")
    if live:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        plan.done.append("systemctl daemon-reload")
    return plan


def _ensure_user(plan: InstallPlan) -> None:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        groups = ["video"] + (["plugdev"] if _group_exists("plugdev") else [])
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             "--groups", ",".join(groups), SERVICE_USER],
            check=True,
        )
        plan.done.append(f"created system user {SERVICE_USER} (groups {', '.join(groups)})")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
