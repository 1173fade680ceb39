"""What every frame source is: open, read BGR frames, close; errors that say what to do."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edgehemo.errors import EdgehemoError


class SourceError(EdgehemoError):
    """The source cannot be used as given (wrong path, unknown spec): a user error, no retry."""


class SourceUnavailableError(EdgehemoError):
    """The source is there in principle but delivers nothing now (unplugged, busy, removed).

    The daemon reopens it with back-off and reports the camera offline meanwhile.
    """


class EndOfSource(Exception):  # noqa: N818 - a normal end, not an error
    """A finite source (file, folder without --watch) has no more frames."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame: BGR uint8 (H, W, 3), the wall-clock time it was read, and its name."""

    image: np.ndarray
    timestamp: float
    name: str = ""


class FrameSource(ABC):
    """A camera, a file or a folder. `read` blocks briefly and returns one frame."""

    description: str

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or file; raises SourceUnavailableError (retry) or SourceError."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when a live source has nothing new yet.

        Raises EndOfSource at a normal end and SourceUnavailableError when the source fails.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice."""

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
