"""The capture daemon's configuration: one TOML file (/etc/edgehemo/edgehemo.toml as a service),
every key also settable on the command line. Unknown keys are errors, never ignored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgehemo.device.cellfinder import CellFinderSettings
from edgehemo.device.quality import QualitySettings
from edgehemo.device.sources.opencv_capture import UsbCameraSettings
from edgehemo.device.sources.picamera import PiCameraSettings
from edgehemo.device.tracking import TrackerSettings
from edgehemo.views import ViewsSetting, tta_mode

DEFAULT_CONFIG = Path("/etc/edgehemo/edgehemo.toml")
STATE_DIR_ENV = "EDGEHEMO_STATE_DIR"


class CaptureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("cbam_cnn_int8", description="Model name or artifact path.")
    backend: str = Field("cpu", description="cpu, gpu, tflite or edgetpu.")
    threads: int = Field(1, ge=0, description="Inference threads (0 = runtime default).")
    tta: ViewsSetting = Field(
        "auto", description="Test-time views averaged per crop: auto (those the model's "
        "manifest names: stain for the shipped cbam_cnn models, mirror for the others), stain "
        "(eight stain hues, each turned by a mirror image: 8 runs; only for a model trained under "
        "varied stain hues), mirror (the crop and its mirror images: 4 runs) or none (one run); "
        "true means mirror, false none.")
    classes: str | None = Field(
        None, description="The only classes an answer may name: comma-separated, white_cells "
        "(no platelet or nucleated red cell is counted), nucleated_cells (no platelet) or all. "
        "Unset: nucleated_cells for the cells the cell finder cuts (it drops platelet-sized "
        "objects, so a platelet answer would always be wrong), all for whole-frame models.")
    source: str = Field("usb:0", description="picamera[:N], usb:N, /dev/videoN, file or folder.")
    loop: bool = Field(False, description="Repeat a video file.")
    watch: bool = Field(False, description="Keep reading new images arriving in a folder.")
    sample_id: str | None = None
    operator: str | None = None
    notes: str | None = None
    target_count: int | None = Field(
        None, gt=0, description="Stop after this many white cells (e.g. 100 or 200)."
    )
    max_frames: int | None = Field(None, gt=0, description="Stop after this many frames.")
    low_confidence: float = Field(
        0.6, ge=0, le=1, description="Cells below this confidence are flagged for review."
    )
    save_crops: bool = Field(True, description="Keep a JPEG of every counted cell.")
    live_view: bool = Field(
        True, description="Publish the current frame and figures for the review page's live view."
    )
    state_dir: Path | None = Field(None, description="Where results are kept.")

    @field_validator("tta", mode="before")
    @classmethod
    def _tta_from_bool(cls, value: Any) -> Any:
        return tta_mode(value) if isinstance(value, bool) else value


class StorageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reserve_mb: float = Field(200.0, ge=0, description="Pause crop images below this free space.")
    resume_mb: float = Field(300.0, ge=0, description="Resume crop images above this.")
    crop_jpeg_quality: int = Field(90, ge=10, le=100)
    crop_max_side: int = Field(256, ge=32, description="Saved crops are at most this wide.")
    disk_check_s: float = Field(1.0, ge=0, description="Seconds between free-space checks.")


class CaptureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capture: CaptureSettings = CaptureSettings()
    storage: StorageSettings = StorageSettings()
    quality: QualitySettings = QualitySettings()
    cellfinder: CellFinderSettings = CellFinderSettings()
    tracking: TrackerSettings = TrackerSettings()
    usb: UsbCameraSettings = UsbCameraSettings()
    picamera: PiCameraSettings = PiCameraSettings()
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra backend settings, e.g. device = 'usb:1'."
    )


def default_state_dir() -> Path:
    """$EDGEHEMO_STATE_DIR, else systemd's StateDirectory, else the user's data directory."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    if os.environ.get("STATE_DIRECTORY"):  # set by systemd from StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "edgehemo"


def resolve_state_dir(flag: Path | None, config: CaptureConfig) -> Path:
    """--state-dir, then $EDGEHEMO_STATE_DIR, then the config, then the defaults."""
    if flag is not None:
        return flag
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    if config.capture.state_dir is not None:
        return config.capture.state_dir
    return default_state_dir()
