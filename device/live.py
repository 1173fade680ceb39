"""The live view's data: the current frame with the found cells outlined and labelled, and the
quality figures and running count, published a few times per second for the review server.

Two files in the state directory, replaced atomically (rename) but not fsynced: they are a view,
not a result, and losing one in a power cut costs nothing. Publishing is rate-limited, so the
capture loop pays for one JPEG encode every `every_s`, not per frame.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgehemo.device.pipeline import FrameOutcome
from edgehemo.device.quality import QualitySettings
from edgehemo.device.session import SlideSession
from edgehemo.preprocess import opencv
from edgehemo.store.atomic import write_atomically

LIVE_IMAGE = "live.jpg"
LIVE_STATUS = "live.json"


class LivePublisher:
    def __init__(self, state_dir: Path, quality: QualitySettings, *, every_s: float = 0.25,
                 max_width: int = 960) -> None:
        self.state_dir = state_dir
        self.quality = quality
        self.every_s = every_s
        self.max_width = max_width
        self._last = float("-inf")
        self.published = 0

    def maybe_publish(self, frame_bgr: np.ndarray, outcome: FrameOutcome,
                      session: SlideSession, fps: float) -> bool:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return False
        self._last = now
        cv2 = opencv()
        height, width = frame_bgr.shape[:2]
        scale = min(1.0, self.max_width / width)
        view = (cv2.resize(frame_bgr, (round(width * scale), round(height * scale)),
                           interpolation=cv2.INTER_AREA) if scale < 1 else frame_bgr.copy())
        for cell, label in zip(outcome.found, outcome.labels or [None] * len(outcome.found),
                               strict=True):
            x0, y0, x1, y1 = (round(v * scale) for v in cell.box)
            colour = (60, 180, 60) if label else (0, 200, 255)
            cv2.rectangle(view, (x0, y0), (x1, y1), colour, 2)
            cv2.putText(view, label or "cell", (x0 + 3, max(14, y0 + 16)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        if not outcome.quality.ok:
            cv2.putText(view, f"REJECTED: {outcome.quality.reason}", (10, 28),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2, cv2.LINE_AA)
        ok, data = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, 70])
        if ok:
            write_atomically(self.state_dir / LIVE_IMAGE, data.tobytes(), durable=False)
        q = outcome.quality
        status: dict[str, Any] = {
            "updated": time.time(),
            "ok": q.ok, "reason": q.reason,
            "focus": round(q.focus, 1), "focus_min": self.quality.min_focus,
            "clipped": round(q.clipped, 4), "clipped_max": self.quality.max_clipped,
            "brightness": round(q.brightness, 1), "brightness_min": self.quality.min_brightness,
            "cast": round(q.cast, 3), "cast_max": self.quality.max_cast,
            "cells_in_view": len(outcome.found), "counts": dict(session.counts),
            "white_cells": session.white_cells, "target": session.target_count,
            "fps": round(fps, 1),
        }
        write_atomically(self.state_dir / LIVE_STATUS, json.dumps(status).encode(),
                         durable=False)
        self.published += 1
        return True


def read_live(state_dir: Path) -> tuple[bytes | None, dict[str, Any] | None]:
    try:
        image = (state_dir / LIVE_IMAGE).read_bytes()
    except OSError:
        image = None
    try:
        status = json.loads((state_dir / LIVE_STATUS).read_text())
    except (OSError, json.JSONDecodeError):
        status = None
    return image, status
