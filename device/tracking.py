"""Count each cell once while the same field stays under the camera.

A still field is seen in many consecutive frames. The tracker estimates how the whole field moved
since the last kept frame (phase correlation on a small grey copy), moves its tracks by that shift
and matches new detections to them by distance: a match is a cell already counted. When the shift
cannot be trusted (the stage moved by more than `max_shift_fraction` of the frame, or the
correlation peak is weak) every track is dropped and all cells in view are new. On the bundled clip
(`bench/bench_frame_stages.py`) the peak is 0.94-0.99 for a drifting still field, 0.79-0.90 for a
20-80 pixel pan and 0.01-0.15 between different fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgehemo.device.cellfinder import FoundCell
from edgehemo.preprocess import opencv

MOTION_WIDTH = 160


class TrackerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match_fraction: float = Field(
        0.5, gt=0, description="Match radius as a fraction of the cell's window side."
    )
    max_missed: int = Field(
        5, ge=0, description="Kept frames a track survives without being seen."
    )
    max_shift_fraction: float = Field(
        0.35, gt=0, le=1, description="Larger field shifts count as a new field (reset)."
    )
    min_response: float = Field(
        0.3, ge=0, le=1, description="Weaker phase-correlation peaks count as a new field."
    )
    moved_px: float = Field(4.0, ge=0, description="Shift reported as stage movement.")


@dataclass
class _Track:
    id: int
    x: float
    y: float
    missed: int = 0


@dataclass(frozen=True)
class TrackResult:
    new: list[bool]  # one per detection: True = not seen before, to be counted
    ids: list[int]  # one per detection: its track, stable while the cell stays in view
    shift: tuple[float, float]
    moved: bool
    reset: bool
    response: float = 0.0  # phase-correlation peak against the previous kept frame


class CellTracker:
    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._tracks: list[_Track] = []
        self._previous: np.ndarray | None = None
        self._window: np.ndarray | None = None
        self._next_id = 0

    def active_ids(self) -> set[int]:
        return {track.id for track in self._tracks}

    def reset(self) -> None:
        self._tracks = []
        self._previous = None

    def _small_grey(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        cv2 = opencv()
        height, width = frame_bgr.shape[:2]
        scale = width / MOTION_WIDTH
        size = (MOTION_WIDTH, max(1, round(height / scale)))
        grey = cv2.cvtColor(cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY).astype(np.float32)
        return grey, scale

    def _shift(self, grey: np.ndarray, scale: float) -> tuple[float, float, bool, float]:
        """Field shift in frame pixels since the previous kept frame, and whether to trust it."""
        cv2 = opencv()
        previous = self._previous
        self._previous = grey
        if previous is None or previous.shape != grey.shape:
            return 0.0, 0.0, False, 0.0
        if self._window is None or self._window.shape != grey.shape:
            self._window = cv2.createHanningWindow(grey.shape[::-1], cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(previous, grey, self._window)
        limit = self.settings.max_shift_fraction * min(grey.shape)
        trusted = response >= self.settings.min_response and max(abs(dx), abs(dy)) <= limit
        return dx * scale, dy * scale, trusted, float(response)

    def update(self, frame_bgr: np.ndarray, cells: list[FoundCell]) -> TrackResult:
        grey, scale = self._small_grey(frame_bgr)
        had_tracks = bool(self._tracks) or self._previous is not None
        dx, dy, trusted, response = self._shift(grey, scale)
        reset = had_tracks and not trusted
        if not trusted:
            self._tracks = []
            dx = dy = 0.0
        for track in self._tracks:
            track.x += dx
            track.y += dy
        new, ids = [], []
        unmatched = list(range(len(self._tracks)))
        for cell in cells:
            cx, cy = cell.center
            radius = self.settings.match_fraction * (cell.crop[2] - cell.crop[0])
            best, best_distance = None, radius
            for index in unmatched:
                track = self._tracks[index]
                distance = float(np.hypot(track.x - cx, track.y - cy))
                if distance <= best_distance:
                    best, best_distance = index, distance
            if best is None:
                new.append(True)
                self._tracks.append(_Track(self._next_id, cx, cy))
                ids.append(self._next_id)
                self._next_id += 1
            else:
                new.append(False)
                unmatched.remove(best)
                track = self._tracks[best]
                track.x, track.y, track.missed = cx, cy, 0
                ids.append(track.id)
        for index in unmatched:
            self._tracks[index].missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.settings.max_missed]
        moved = reset or float(np.hypot(dx, dy)) >= self.settings.moved_px
        return TrackResult(new=new, ids=ids, shift=(dx, dy), moved=moved, reset=reset,
                           response=response)
