"""One frame through the stages, without I/O: quality gate -> cell finder -> tracker -> crops ->
classifier -> session. The daemon adds the source, storage and service duties around it; the
benchmark times it as it is.

The tracker runs before the classifier so that a cell seen in many frames of a still field is
classified once, when it first appears. With a red-cell ruler, the finder's classifier windows are
resized to the training magnification once the session's red cells have been measured; the
ruler follows the tracker's field shift so that a red cell in many frames is measured once. When
the session's red-cell size is fixed (given, or measured), the finder's pixel sizes follow it
(`CellFinderSettings.at_red_cell`): another objective or camera resolution finds the same cells.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgehemo.device.cellfinder import CellFinder, FoundCell, cut_crops, with_window
from edgehemo.device.quality import QualityGate, QualityResult
from edgehemo.device.session import SlideSession
from edgehemo.device.tracking import CellTracker, TrackResult
from edgehemo.ood import ColourReference
from edgehemo.preprocess import PBC_CROP_FRACTION, opencv
from edgehemo.ruler import RedCellRuler, pbc_window_side

STAGES = ("quality", "find", "track", "classify", "count")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifiedCell:
    cell: FoundCell
    class_index: int
    class_name: str
    confidence: float
    probabilities: np.ndarray
    latency_ms: float
    flags: tuple[str, ...]


@dataclass
class FrameOutcome:
    quality: QualityResult
    found: list[FoundCell] = field(default_factory=list)
    new_cells: list[ClassifiedCell] = field(default_factory=list)
    track: TrackResult | None = None
    labels: list[str | None] = field(default_factory=list)  # per found cell, once classified
    stage_ms: dict[str, float] = field(default_factory=dict)


Predict = Callable[[np.ndarray], np.ndarray]  # framed RGB uint8 (N,S,S,3) -> probabilities


class Finder(Protocol):
    """What to classify in a frame: the white cells (CellFinder) or the field (WholeFrameFinder)."""

    def find(self, frame_bgr: np.ndarray) -> list[FoundCell]: ...


class FramePipeline:
    def __init__(self, predict: Predict, classes: tuple[str, ...], input_size: int,
                 session: SlideSession, *, quality: QualityGate | None = None,
                 finder: Finder | None = None, tracker: CellTracker | None = None,
                 colour_reference: ColourReference | None = None,
                 ruler: RedCellRuler | None = None,
                 crop_fraction: float = PBC_CROP_FRACTION) -> None:
        self.predict = predict
        self.classes = classes
        self.input_size = input_size
        self.session = session
        self.quality = quality or QualityGate()
        self.finder: Finder = finder or CellFinder()
        self.tracker = tracker or CellTracker()
        self.colour_reference = colour_reference
        self.ruler = ruler
        self.crop_fraction = crop_fraction  # of the model's training fields, for the ruler
        self._track_labels: dict[int, str] = {}
        self._ruler_fed = False  # the ruler has seen a frame the tracker has seen
        self._finder_sized = False  # the finder's sizes follow the session's red cells
        if ruler is not None and ruler.diameter is not None:
            self._size_finder(ruler.diameter)

    def process(self, frame_bgr: np.ndarray) -> FrameOutcome:
        clock = time.perf_counter
        t0 = clock()
        quality = self.quality.assess(frame_bgr)
        t1 = clock()
        outcome = FrameOutcome(quality)
        if not quality.ok:
            outcome.stage_ms["quality"] = (t1 - t0) * 1000
            return outcome
        found = self.finder.find(frame_bgr)
        t2 = clock()
        track = self.tracker.update(frame_bgr, found)
        t3 = clock()
        if self.ruler is not None:  # framing, timed with the finder
            found = self._at_ruler_scale(frame_bgr, found, track)
        framed = clock()
        fresh = [cell for cell, new in zip(found, track.new, strict=True) if new]
        crops = cut_crops(frame_bgr, fresh, self.input_size)
        probabilities = (
            self.predict(crops) if fresh else np.zeros((0, len(self.classes)), dtype=np.float32)
        )
        unfamiliar = (
            self.colour_reference.unfamiliar(crops) if self.colour_reference is not None
            else np.zeros(len(fresh), dtype=bool)
        )
        t4 = clock()
        per_cell_ms = (t4 - framed) * 1000 / max(1, len(fresh))
        for cell, probs, odd in zip(fresh, probabilities, unfamiliar, strict=True):
            index = int(np.argmax(probs))
            name = self.classes[index]
            confidence = float(probs[index])
            flags = self.session.add(name, confidence, unfamiliar=bool(odd))
            outcome.new_cells.append(
                ClassifiedCell(cell, index, name, confidence, probs, per_cell_ms, flags)
            )
        for track_id, cell in zip([i for i, n in zip(track.ids, track.new, strict=True) if n],
                                  outcome.new_cells, strict=True):
            self._track_labels[track_id] = cell.class_name
        alive = self.tracker.active_ids()
        self._track_labels = {i: v for i, v in self._track_labels.items() if i in alive}
        outcome.labels = [self._track_labels.get(i) for i in track.ids]
        t5 = clock()
        outcome.found = found
        outcome.track = track
        outcome.stage_ms = {
            "quality": (t1 - t0) * 1000, "find": (t2 - t1 + framed - t3) * 1000,
            "track": (t3 - t2) * 1000, "classify": (t4 - framed) * 1000, "count": (t5 - t4) * 1000,
        }
        return outcome

    def _at_ruler_scale(self, frame_bgr: np.ndarray, found: list[FoundCell],
                        track: TrackResult) -> list[FoundCell]:
        """`found` with windows of the training magnification, once the session's red cells
        give it; measures this frame's red cells until the figure is fixed."""
        assert self.ruler is not None
        red_cell = self.ruler.diameter
        if red_cell is None:
            same_field = self._ruler_fed and not track.reset
            cv2 = opencv()
            rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)  # ~40x faster than numpy's flip
            red_cell = self.ruler.update(rgb, track.shift if same_field else None)
            self._ruler_fed = True
        if self.ruler.diameter is not None and not self._finder_sized:
            self._size_finder(self.ruler.diameter)  # from the next frame on
        if red_cell is None:
            return found
        side = pbc_window_side(self.crop_fraction, red_cell)
        return [with_window(cell, side) for cell in found]

    def _size_finder(self, red_cell: float) -> None:
        self._finder_sized = True
        if not isinstance(self.finder, CellFinder):
            return
        settings = self.finder.settings.at_red_cell(red_cell)
        if settings != self.finder.settings:
            self.finder = CellFinder(settings)
            logger.info("cell finder sized for %.1f px red cells: downscale %d, close_px %d, "
                        "min_area_px %d", red_cell, settings.downscale, settings.close_px,
                        settings.min_area_px)
