"""A folder of images: the files already there in name order, then (with `watch`) new arrivals.

This is how a microscope camera that saves to a share, or a user with a folder of captures, feeds
the daemon. Files that are not images are skipped with a log line; a file still being written is
retried until it decodes or has been left alone for `settle_s`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edgehemo.device.sources.base import EndOfSource, Frame, FrameSource, SourceUnavailableError
from edgehemo.preprocess import IMAGE_SUFFIXES, opencv

logger = logging.getLogger(__name__)


class FolderSource(FrameSource):
    def __init__(self, path: Path, *, watch: bool = False, settle_s: float = 2.0,
                 poll_s: float = 0.2) -> None:
        self.path = path
        self.watch = watch
        self.settle_s = settle_s
        self.poll_s = poll_s
        self.description = f"image folder {path}" + (" (watching for new images)" if watch else "")
        self._done: set[str] = set()
        self._queue: list[Path] = []
        self.skipped: list[tuple[str, str]] = []

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceUnavailableError(f"{self.path}: the image folder is gone")

    def _scan(self) -> None:
        try:
            names = sorted(p for p in self.path.iterdir() if p.is_file())
        except OSError as error:
            message = f"{self.path}: cannot list the folder ({error})"
            raise SourceUnavailableError(message) from error
        queued = {p.name for p in self._queue}
        for path in names:
            if path.name in self._done or path.name in queued or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                self._skip(path, "not an image file")
                continue
            self._queue.append(path)

    def _skip(self, path: Path, why: str) -> None:
        self._done.add(path.name)
        self.skipped.append((path.name, why))
        logger.warning("skipped %s: %s", path, why)

    def read(self) -> Frame | None:
        if not self._queue:
            self._scan()
        while self._queue:
            path = self._queue.pop(0)
            image = self._decode(path)
            if image is None:
                continue
            self._done.add(path.name)
            return Frame(image, time.time(), path.name)
        if not self.path.is_dir():
            raise SourceUnavailableError(f"{self.path}: the image folder is gone")
        if not self.watch:
            raise EndOfSource(f"{self.path}: no more images")
        time.sleep(self.poll_s)
        return None

    def _decode(self, path: Path) -> np.ndarray | None:
        cv2 = opencv()
        try:
            data = np.fromfile(path, dtype=np.uint8)
            age = time.time() - path.stat().st_mtime
        except OSError as error:
            self._skip(path, f"unreadable ({error})")
            return None
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is not None:
            return image
        if self.watch and age < self.settle_s:
            return None  # probably still being written: the next scan picks it up again
        self._skip(path, "not a readable image (OpenCV could not decode it)")
        return None

    def close(self) -> None:
        pass
