"""Pause image saving when free space runs low, so results keep being recorded.

Crop images are what fill a disk; a results row is a few hundred bytes. Below `reserve_mb` free,
images stop; they resume only above `resume_mb`, so the state does not flap around one value.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

MB = 1024 * 1024


class DiskGuard:
    def __init__(
        self,
        path: str | Path,
        *,
        reserve_mb: float = 200.0,
        resume_mb: float | None = None,
        check_every_s: float = 1.0,
        free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.reserve_mb = reserve_mb
        self.resume_mb = resume_mb if resume_mb is not None else reserve_mb * 1.5
        if self.resume_mb < self.reserve_mb:
            raise ValueError(
                f"resume_mb ({self.resume_mb}) must be at least reserve_mb ({self.reserve_mb})"
            )
        self.check_every_s = check_every_s
        self._free_bytes = free_bytes or (lambda p: shutil.disk_usage(p).free)
        self._checked_at = float("-inf")
        self.free_mb = float("inf")
        self.saving_images = True

    def check(self) -> bool:
        """Whether images may be saved now; re-reads free space at most every check_every_s."""
        now = time.monotonic()
        if now - self._checked_at < self.check_every_s:
            return self.saving_images
        self._checked_at = now
        self.free_mb = self._free_bytes(self.path) / MB
        if self.saving_images and self.free_mb < self.reserve_mb:
            self.saving_images = False
            logger.warning(
                "only %.0f MB free on %s (reserve %.0f MB): crop images paused, results are "
                "still recorded", self.free_mb, self.path, self.reserve_mb,
            )
        elif not self.saving_images and self.free_mb >= self.resume_mb:
            self.saving_images = True
            logger.warning("%.0f MB free on %s: crop images resumed", self.free_mb, self.path)
        return self.saving_images
