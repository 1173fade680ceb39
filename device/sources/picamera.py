"""The Raspberry Pi camera through picamera2 (libcamera).

picamera2 is not on PyPI in a usable form for the Pi's libcamera: Raspberry Pi OS ships it as the
apt package `python3-picamera2`. A virtual environment sees it only when created with
`python3 -m venv --system-site-packages`; the error below says so.
"""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, ConfigDict, Field

from edgehemo.device.sources.base import Frame, FrameSource, SourceError, SourceUnavailableError

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not importable. On Raspberry Pi OS: `sudo apt install python3-picamera2`, then "
    "create the environment with `python3 -m venv --system-site-packages` so it can see it."
)


class PiCameraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(1920, gt=0)
    height: int = Field(1080, gt=0)
    exposure_us: int | None = Field(None, gt=0, description="Fixed exposure; None = automatic.")
    awb: bool = Field(True, description="Automatic white balance.")


class PiCameraSource(FrameSource):
    def __init__(self, camera: int = 0, settings: PiCameraSettings | None = None) -> None:
        self.camera = camera
        self.settings = settings or PiCameraSettings()
        self.description = f"Raspberry Pi camera {camera}"
        self._picam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as error:
            raise SourceError(INSTALL_HINT) from error
        cameras = Picamera2.global_camera_info()
        if len(cameras) <= self.camera:
            raise SourceUnavailableError(
                f"no Pi camera {self.camera}: libcamera sees {len(cameras)} camera(s). Check the "
                "ribbon cable and `rpicam-hello --list-cameras`"
            )
        try:
            picam = Picamera2(self.camera)
        except RuntimeError as error:
            raise SourceUnavailableError(
                f"Pi camera {self.camera} is busy: another program holds it ({error})"
            ) from error
        s = self.settings
        # "RGB888" in libcamera is B,G,R in memory: exactly OpenCV's BGR order.
        config = picam.create_video_configuration(
            main={"size": (s.width, s.height), "format": "RGB888"}
        )
        picam.configure(config)
        controls = {"AwbEnable": s.awb}
        if s.exposure_us:
            controls.update(AeEnable=False, ExposureTime=s.exposure_us)
        picam.set_controls(controls)
        picam.start()
        self._picam = picam

    def read(self) -> Frame:
        if self._picam is None:
            raise SourceUnavailableError(f"Pi camera {self.camera}: not open")
        try:
            image = self._picam.capture_array("main")
        except Exception as error:  # libcamera raises plain RuntimeErrors on a lost camera
            raise SourceUnavailableError(f"Pi camera {self.camera} stopped: {error}") from error
        return Frame(image[..., :3], time.time(), f"picamera{self.camera}")

    def close(self) -> None:
        if self._picam is not None:
            try:
                self._picam.stop()
                self._picam.close()
            finally:
                self._picam = None
