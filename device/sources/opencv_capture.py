"""Video files and USB microscopes (UVC cameras), both read through OpenCV's VideoCapture."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgehemo.device.sources.base import EndOfSource, Frame, FrameSource, SourceUnavailableError
from edgehemo.preprocess import opencv

logger = logging.getLogger(__name__)


class VideoFileSource(FrameSource):
    """A video file (e.g. MJPG .avi, .mp4); ends at its end unless `loop`."""

    def __init__(self, path: Path, *, loop: bool = False) -> None:
        self.path = path
        self.loop = loop
        self.description = f"video file {path}" + (" (looping)" if loop else "")
        self._capture = None
        self._position = 0

    def open(self) -> None:
        cv2 = opencv()
        if not self.path.is_file():
            raise SourceUnavailableError(f"{self.path}: the video file is gone")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise SourceUnavailableError(f"{self.path}: OpenCV cannot open this video")
        # after a reopen, continue where the last good frame was
        if self._position:
            capture.set(cv2.CAP_PROP_POS_FRAMES, self._position)
        self._capture = capture

    def read(self) -> Frame:
        if self._capture is None:
            raise SourceUnavailableError(f"{self.path}: not open")
        ok, image = self._capture.read()
        if not ok and self.loop and self._position > 0:
            self._capture.set(opencv().CAP_PROP_POS_FRAMES, 0)
            self._position = 0
            ok, image = self._capture.read()
        if not ok:
            if self.path.is_file():
                raise EndOfSource(f"{self.path}: end of video")
            raise SourceUnavailableError(f"{self.path}: the video file is gone")
        self._position += 1
        return Frame(image, time.time(), f"{self.path.name}#{self._position}")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class UsbCameraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int | None = Field(None, gt=0, description="Requested frame width.")
    height: int | None = Field(None, gt=0, description="Requested frame height.")
    fps: float | None = Field(None, gt=0, description="Requested frame rate.")
    fourcc: str | None = Field(
        None, min_length=4, max_length=4, description="Pixel format, e.g. MJPG or YUYV."
    )


class UsbCameraSource(FrameSource):
    """A UVC microscope camera: `usb:0` (index) or a /dev/video path, through V4L2."""

    def __init__(self, device: int | str, settings: UsbCameraSettings | None = None) -> None:
        self.device = device
        self.settings = settings or UsbCameraSettings()
        name = f"/dev/video{device}" if isinstance(device, int) else device
        self.description = f"USB camera {name}"
        self._name = name
        self._capture = None

    def open(self) -> None:
        cv2 = opencv()
        if not Path(self._name).exists():
            raise SourceUnavailableError(
                f"no camera at {self._name}: is the microscope camera plugged in? "
                "(`ls /dev/video*` lists the cameras this computer sees)"
            )
        capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            raise SourceUnavailableError(
                f"{self._name} exists but cannot be opened: the camera is busy (another program "
                "uses it) or this user is not in the 'video' group"
            )
        s = self.settings
        if s.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*s.fourcc))
        if s.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        if s.height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        if s.fps:
            capture.set(cv2.CAP_PROP_FPS, s.fps)
        self._capture = capture
        logger.info(
            "%s open at %dx%d, %.1f fps", self._name,
            capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT),
            capture.get(cv2.CAP_PROP_FPS),
        )

    def read(self) -> Frame:
        if self._capture is None:
            raise SourceUnavailableError(f"{self._name}: not open")
        ok, image = self._capture.read()
        if not ok or image is None:
            raise SourceUnavailableError(f"{self._name}: the camera stopped delivering frames")
        return Frame(image, time.time(), self._name)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
