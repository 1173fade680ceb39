"""The capture daemon: wires a frame source, the frame pipeline and the results store, and does a
service's duties (sd_notify READY/WATCHDOG/STATUS, SIGTERM, status file, source back-off).

Durability: every frame is one SQLite transaction (WAL, synchronous=FULL) committed before the
next frame is read; crop JPEGs are written atomically before the row that names them. A kill at any
moment leaves every committed result, and at worst an orphan but complete JPEG.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from edgehemo.classes import ALL_CLASSES, NUCLEATED_CELLS
from edgehemo.device.cellfinder import CellFinder, grow, window
from edgehemo.device.classifier import Classifier
from edgehemo.device.config import CaptureConfig
from edgehemo.device.fieldfinder import WholeFrameFinder
from edgehemo.device.live import LivePublisher
from edgehemo.device.notify import SystemdNotifier
from edgehemo.device.pipeline import STAGES, Finder, FrameOutcome, FramePipeline
from edgehemo.device.quality import QualityGate
from edgehemo.device.session import SlideSession
from edgehemo.device.sources import (
    EndOfSource,
    Frame,
    FrameSource,
    SourceUnavailableError,
    open_source,
)
from edgehemo.device.status import write_status
from edgehemo.device.tracking import CellTracker
from edgehemo.preprocess import opencv
from edgehemo.ruler import RedCellRuler
from edgehemo.store import (
    CellRecord,
    DiskGuard,
    FrameRecord,
    ResultStore,
    SessionInfo,
    StorageError,
    write_atomically,
)

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
MAX_BACKOFF_S = 30.0


@dataclass
class CaptureSummary:
    session_uid: str
    session_id: int
    state_dir: Path
    end_reason: str = ""
    frames: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    cells_found: int = 0
    crops_saved: int = 0
    crops_not_saved: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    differential: list[tuple[str, int, float]] = field(default_factory=list)
    white_cells: int = 0
    source_outages: int = 0
    red_cell_px: float | None = None  # the session's magnification (edgehemo.ruler)
    red_cells_measured: int = 0
    red_cells_recorded: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


class _SourceKeeper:
    """Opens the source, reopens it with exponential back-off when it fails, reports online."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.online = False
        self.outages = 0
        self._retry_at = 0.0
        self._backoff = 0.5
        self._last_error = ""

    def read(self) -> Frame | None:
        now = time.monotonic()
        if not self.online:
            if now < self._retry_at:
                time.sleep(min(0.2, self._retry_at - now))
                return None
            try:
                self.source.open()
            except SourceUnavailableError as error:
                self._fail(str(error))
                return None
            self._set_online()
        try:
            frame = self.source.read()
        except SourceUnavailableError as error:
            self._fail(str(error))
            return None
        return frame

    def _set_online(self) -> None:
        if self._last_error:
            logger.warning("source back online: %s", self.source.description)
        else:
            logger.info("reading from %s", self.source.description)
        self.online = True
        self._backoff = 0.5
        self._last_error = ""

    def _fail(self, message: str) -> None:
        self.source.close()
        if self.online or message != self._last_error:
            logger.warning("source offline: %s (retrying in %.1f s)", message, self._backoff)
        if self.online:
            self.outages += 1
        self.online = False
        self._last_error = message
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)

    @property
    def last_error(self) -> str:
        return self._last_error


def session_answer_spec(classes: str | None, takes: str) -> str:
    """The `answer_classes` spec of a session: what `[capture] classes` says, else every class
    but platelets for the cells the finder cuts (it drops platelet-sized objects) and every class
    for a whole-frame model."""
    if classes is not None:
        return classes
    return ALL_CLASSES if takes == "whole_frame" else NUCLEATED_CELLS


class CaptureDaemon:
    def __init__(self, config: CaptureConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self._stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        self.request_stop(f"stopped by {signal.Signals(number).name}")

    def run(self) -> CaptureSummary:
        c = self.config.capture
        # The model, its options and the store first, the camera last: a typo or an unwritable
        # state directory must not leave a camera opened.
        classifier = Classifier.load(
            c.model, backend=c.backend,
            settings={"threads": c.threads, **self.config.backend_options}, tta=c.tta,
        )
        manifest = classifier.manifest
        classifier.restrict_answers(session_answer_spec(c.classes, manifest.takes))
        if classifier.answers is not None:
            logger.info("answers restricted to %s", ", ".join(classifier.answer_names))
        finder: Finder
        ruler = None
        if manifest.takes == "whole_frame":
            finder = WholeFrameFinder(manifest.preprocessing.crop_fraction)
            logger.info("%s takes whole frames: each field of view is classified once",
                        manifest.name)
        else:
            finder = CellFinder(self.config.cellfinder)
            settings = self.config.cellfinder
            if settings.window == "red_cells":
                ruler = RedCellRuler(settings.red_cells_to_measure, known=settings.red_cell_px)
        store = ResultStore.in_dir(self.state_dir)
        _remove_partial_files(self.state_dir / "crops")
        interrupted = store.mark_interrupted()
        if interrupted:
            logger.warning("%d session(s) left running by a stopped process marked interrupted",
                           interrupted)
        session = SlideSession(manifest.classes, c.target_count, c.low_confidence)
        pipeline = FramePipeline(
            classifier.predict_framed, manifest.classes, manifest.preprocessing.input_size,
            session, quality=QualityGate(self.config.quality),
            finder=finder, tracker=CellTracker(self.config.tracking),
            colour_reference=manifest.colour_reference, ruler=ruler,
            crop_fraction=manifest.preprocessing.crop_fraction,
        )
        if manifest.colour_reference is None:
            logger.warning("%s has no colour reference in its manifest: cells that look unlike "
                           "the training images cannot be flagged (re-export it)", manifest.name)
        source = open_source(c.source, loop=c.loop, watch=c.watch, usb=self.config.usb,
                             picamera=self.config.picamera)
        try:
            session_id, uid = store.start_session(SessionInfo(
                source=source.description, model=manifest.name, model_sha256=manifest.sha256,
                backend=c.backend, classes=manifest.classes, sample_id=c.sample_id,
                operator=c.operator, notes=c.notes, target_count=c.target_count,
                settings={**self.config.model_dump(mode="json"),
                          "model_preprocessing": manifest.preprocessing.model_dump(mode="json"),
                          "model_takes": manifest.takes,
                          "answer_classes": classifier.answer_names,
                          "views": classifier.tta,
                          "model_adaptation": manifest.adaptation,
                          "colour_reference": manifest.colour_reference is not None},
            ))
        except BaseException:
            source.close()
            raise
        summary = CaptureSummary(uid, session_id, self.state_dir)
        logger.info("session %s started: %s on %s, model %s (%s)", uid, source.description,
                    c.backend, manifest.name, manifest.sha256[:12])
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._loop(source, pipeline, store, summary, classifier)
            if summary.red_cell_px is not None and not summary.red_cells_recorded:
                # not fixed within the session: the median of what was measured
                store.record_red_cells(session_id, summary.red_cell_px,
                                       summary.red_cells_measured)
            store.finish_session(session_id, reason=summary.end_reason)
        except BaseException as error:
            with contextlib.suppress(StorageError):  # say why; what was committed stays
                store.finish_session(session_id, status="interrupted",
                                     reason=f"{type(error).__name__}: {error}")
            raise
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            source.close()
            summary.differential = session.differential()
            for line in session.attention_summary():  # for the journal of a service
                logger.warning("session %s: %s", uid, line)
            summary.white_cells = session.white_cells
            try:
                self._write_status(summary, session, None, None, active=False)
            except OSError as error:  # e.g. the disk is full: the results are already safe
                logger.warning("could not write the final status: %s", error)
            store.close()
        return summary

    def _loop(self, source: FrameSource, pipeline: FramePipeline, store: ResultStore,
              summary: CaptureSummary, classifier: Classifier) -> None:
        c = self.config.capture
        notifier = SystemdNotifier()
        keeper = _SourceKeeper(source)
        storage = self.config.storage
        guard = DiskGuard(self.state_dir, reserve_mb=storage.reserve_mb,
                          resume_mb=max(storage.resume_mb, storage.reserve_mb),
                          check_every_s=storage.disk_check_s)
        crop_dir = self.state_dir / "crops" / summary.session_uid
        model_fields = {"model": classifier.manifest.name,
                        "model_sha256": classifier.manifest.sha256, "backend": c.backend}
        live = (LivePublisher(self.state_dir, self.config.quality) if c.live_view else None)
        notifier.ready(f"session {summary.session_uid}: waiting for frames")
        started = time.perf_counter()
        last_status = float("-inf")
        while self._stop_reason is None:
            notifier.watchdog()
            now = time.perf_counter()
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                summary.seconds = now - started
                summary.source_outages = keeper.outages
                self._write_status(summary, pipeline.session, keeper, guard, notifier=notifier)
            if c.max_frames is not None and summary.frames >= c.max_frames:
                self._stop_reason = f"reached {c.max_frames} frames"
                break
            if pipeline.session.done:
                self._stop_reason = f"counted {c.target_count} white cells"
                break
            try:
                frame = keeper.read()
            except EndOfSource as end:
                self._stop_reason = str(end)
                break
            if frame is None:
                continue
            outcome = pipeline.process(frame.image)
            summary.frames += 1
            if pipeline.ruler is not None:
                self._follow_ruler(pipeline.ruler, store, summary)
            if live is not None:
                elapsed = time.perf_counter() - started
                live.maybe_publish(frame.image, outcome, pipeline.session,
                                   summary.frames / elapsed if elapsed else 0.0)
            for stage, ms in outcome.stage_ms.items():
                summary.stage_ms[stage] += ms
            cells = self.save_cells(frame, outcome, crop_dir, guard, summary,
                                     classifier.manifest.preprocessing.crop_fraction)
            t0 = time.perf_counter()
            store.record_frame(summary.session_id, self._frame_record(summary.frames, frame,
                                                                      outcome), cells,
                               **model_fields)
            summary.stage_ms["store"] = summary.stage_ms.get("store", 0.0) + (
                time.perf_counter() - t0) * 1000
            if outcome.quality.ok:
                summary.kept += 1
                summary.cells_found += len(outcome.found)
            else:
                summary.rejected[outcome.quality.reason or "unknown"] += 1
        summary.end_reason = self._stop_reason or ""
        summary.seconds = time.perf_counter() - started
        summary.source_outages = keeper.outages
        notifier.stopping()
        logger.info("session %s ends: %s", summary.session_uid, summary.end_reason)

    @staticmethod
    def _follow_ruler(ruler: RedCellRuler, store: ResultStore, summary: CaptureSummary) -> None:
        """Keep the session's red-cell figure in the summary; record it once it is fixed."""
        if summary.red_cell_px is None and ruler.current is not None:
            logger.info("session %s: red cells measure %.1f px (from %d): cells framed at the "
                        "model's training magnification", summary.session_uid, ruler.current,
                        ruler.measured)
        summary.red_cell_px, summary.red_cells_measured = ruler.current, ruler.measured
        if ruler.diameter is not None and not summary.red_cells_recorded:
            store.record_red_cells(summary.session_id, ruler.diameter, ruler.measured)
            summary.red_cells_recorded = True

    @staticmethod
    def _frame_record(seq: int, frame: Frame, outcome: FrameOutcome) -> FrameRecord:
        q = outcome.quality
        return FrameRecord(
            seq=seq, captured_at=frame.timestamp, kept=q.ok, reason=q.reason,
            focus=round(q.focus, 3), clipped=round(q.clipped, 5), cast=round(q.cast, 4),
            cells_found=len(outcome.found), cells_new=len(outcome.new_cells),
            moved=bool(outcome.track and outcome.track.moved),
        )

    def save_cells(self, frame: Frame, outcome: FrameOutcome, crop_dir: Path, guard: DiskGuard,
                    summary: CaptureSummary, crop_fraction: float) -> list[CellRecord]:
        storage = self.config.storage
        save = self.config.capture.save_crops and bool(outcome.new_cells) and guard.check()
        records = []
        for index, cell in enumerate(outcome.new_cells):
            crop_path = None
            if save:
                name = f"{summary.frames:07d}-{index}.jpg"
                # a field like a PBC image: the classifier's window is its centre crop_fraction,
                # so `edgehemo classify` / `train` on saved crops see what the daemon saw
                image = window(frame.image, grow(cell.cell.crop, 1 / crop_fraction))
                try:
                    write_atomically(crop_dir / name, _encode_jpeg(
                        image, storage.crop_max_side, storage.crop_jpeg_quality))
                except OSError as error:  # disk filled faster than the guard looked
                    logger.warning("crop image not saved (%s); the result is kept", error)
                    summary.crops_not_saved += 1
                else:
                    crop_path = f"crops/{summary.session_uid}/{name}"
                    summary.crops_saved += 1
            elif self.config.capture.save_crops:
                summary.crops_not_saved += 1
            records.append(CellRecord(
                box=cell.cell.box, class_name=cell.class_name, class_index=cell.class_index,
                confidence=cell.confidence,
                probabilities=tuple(float(p) for p in cell.probabilities),
                latency_ms=cell.latency_ms, flags=cell.flags, crop_path=crop_path,
            ))
        return records

    def _write_status(self, summary: CaptureSummary, session: SlideSession,
                      keeper: _SourceKeeper | None, guard: DiskGuard | None, *,
                      active: bool = True, notifier: SystemdNotifier | None = None) -> None:
        status: dict[str, Any] = {
            "active": active,
            "session": summary.session_uid,
            "source": self.config.capture.source,
            "camera_online": keeper.online if keeper else False,
            "camera_error": keeper.last_error if keeper else "",
            "fps": round(summary.fps, 2),
            "frames": summary.frames,
            "kept": summary.kept,
            "rejected": dict(summary.rejected),
            "cells_counted": session.total,
            "white_cells": session.white_cells,
            "counts": dict(session.counts),
            "disk_free_mb": round(guard.free_mb, 1) if guard and guard.free_mb != float("inf")
            else None,
            "saving_images": guard.saving_images if guard else None,
            "model": self.config.capture.model,
            "backend": self.config.capture.backend,
            "red_cell_px": (round(summary.red_cell_px, 1) if summary.red_cell_px is not None
                            else None),
        }
        write_status(self.state_dir, status)
        if notifier is not None:
            camera = "camera online" if status["camera_online"] else "camera OFFLINE"
            images = "" if status["saving_images"] in (True, None) else " | images PAUSED (disk)"
            notifier.status(f"{summary.fps:.1f} fps | {summary.frames} frames | "
                            f"{session.total} cells | {camera}{images}")


def _encode_jpeg(image_bgr: np.ndarray, max_side: int, quality: int) -> bytes:
    cv2 = opencv()
    height, width = image_bgr.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a crop as JPEG")
    return data.tobytes()


def _remove_partial_files(crops: Path) -> None:
    """Temporary files a kill left behind mid-write: never results, safe to delete."""
    if crops.is_dir():
        for leftover in crops.glob("*/.*.tmp"):
            leftover.unlink(missing_ok=True)
