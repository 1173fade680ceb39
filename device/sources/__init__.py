"""Frame sources: Pi camera, USB microscope, video file, image folder; chosen by a spec string.

    picamera / picamera:1      Raspberry Pi camera (picamera2)
    usb:0 / /dev/video2        USB microscope through OpenCV/V4L2
    clip.avi                   a video file (--loop to repeat)
    captures/                  an image folder (--watch for new files)
"""

from __future__ import annotations

from pathlib import Path

from edgehemo.device.sources.base import (
    EndOfSource,
    Frame,
    FrameSource,
    SourceError,
    SourceUnavailableError,
)
from edgehemo.device.sources.folder import FolderSource
from edgehemo.device.sources.opencv_capture import (
    UsbCameraSettings,
    UsbCameraSource,
    VideoFileSource,
)
from edgehemo.device.sources.picamera import PiCameraSettings, PiCameraSource

__all__ = [
    "EndOfSource",
    "Frame",
    "FrameSource",
    "SourceError",
    "SourceUnavailableError",
    "open_source",
]

VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".mjpg", ".mjpeg", ".webm"})


def open_source(
    spec: str,
    *,
    loop: bool = False,
    watch: bool = False,
    usb: UsbCameraSettings | None = None,
    picamera: PiCameraSettings | None = None,
) -> FrameSource:
    """The source a spec names (not yet opened). A path that does not exist is a SourceError."""
    if spec == "picamera" or spec.startswith("picamera:"):
        index = spec.partition(":")[2] or "0"
        if not index.isdigit():
            raise SourceError(f"source {spec!r}: expected picamera or picamera:N")
        return PiCameraSource(int(index), picamera)
    if spec.startswith("usb:"):
        index = spec.partition(":")[2]
        if not index.isdigit():
            raise SourceError(f"source {spec!r}: expected usb:N (e.g. usb:0) or a /dev/video path")
        return UsbCameraSource(int(index), usb)
    if spec.startswith("/dev/video"):
        return UsbCameraSource(spec, usb)
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path, watch=watch)
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise SourceError(
                f"{path}: not a video file this reads ({', '.join(sorted(VIDEO_SUFFIXES))}); "
                "for still images give their folder"
            )
        return VideoFileSource(path, loop=loop)
    raise SourceError(
        f"source {spec!r} is neither an existing file or folder nor a camera "
        "(picamera, usb:N, /dev/videoN)"
    )
