"""The results database: SQLite in WAL mode with synchronous=FULL, one transaction per frame.

A commit returns only once the frame and its cells are on disk, so a power cut loses at most the
frame being processed. Readers (`edgehemo results`, the review page) can read while the daemon
writes.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgehemo.errors import EdgehemoError
from edgehemo.store.schema import MIGRATIONS, NOT_A_CELL, SCHEMA_VERSION

DATABASE_NAME = "edgehemo.db"


class StorageError(EdgehemoError):
    """The results database cannot be opened or written (full disk, permissions, corruption)."""


@dataclass(frozen=True)
class SessionInfo:
    """What a capture session records about itself when it starts."""

    source: str
    model: str
    model_sha256: str
    backend: str
    classes: tuple[str, ...]
    sample_id: str | None = None
    operator: str | None = None
    notes: str | None = None
    target_count: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameRecord:
    seq: int
    captured_at: float
    kept: bool
    reason: str | None = None
    focus: float | None = None
    clipped: float | None = None
    cast: float | None = None
    cells_found: int = 0
    cells_new: int = 0
    moved: bool = False


@dataclass(frozen=True)
class CellRecord:
    box: tuple[int, int, int, int]
    class_name: str
    class_index: int
    confidence: float
    probabilities: tuple[float, ...]
    latency_ms: float
    flags: tuple[str, ...] = ()
    crop_path: str | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_session_uid() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class ResultStore:
    """One SQLite database of sessions, frames and cells."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.Error, OSError) as error:
            raise StorageError(f"{self.path}: cannot open the results database: {error}") from error

    @classmethod
    def in_dir(cls, state_dir: str | Path) -> ResultStore:
        """The database of a state directory, created if it is not there (the daemon)."""
        return cls(Path(state_dir) / DATABASE_NAME)

    @classmethod
    def existing(cls, state_dir: str | Path) -> ResultStore:
        """The database of a state directory for readers: never creates one."""
        path = Path(state_dir) / DATABASE_NAME
        if not path.is_file():
            raise StorageError(f"no results in {state_dir} yet (run `edgehemo capture` first, "
                               "or give --state-dir)")
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite already rolled back on e.g. SQLITE_FULL
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            if "full" in str(error):
                raise StorageError(
                    f"{self.path}: the disk is full; results cannot be saved ({error})"
                ) from error
            raise StorageError(f"{self.path}: {error}") from error

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: database schema {version} is newer than this edgehemo "
                f"({SCHEMA_VERSION}); upgrade edgehemo"
            )
        for number in range(version, SCHEMA_VERSION):
            with self._transaction() as db:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # writing

    def start_session(self, info: SessionInfo) -> tuple[int, str]:
        """Open a session; returns its row id and uid."""
        uid = new_session_uid()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO sessions (uid, sample_id, operator, notes, started_at, status, "
                "source, model, model_sha256, backend, classes, target_count, settings) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (uid, info.sample_id, info.operator, info.notes, now_iso(), info.source,
                 info.model, info.model_sha256, info.backend, json.dumps(list(info.classes)),
                 info.target_count, json.dumps(info.settings, default=str)),
            )
        return int(cursor.lastrowid), uid

    def record_frame(self, session_id: int, frame: FrameRecord,
                     cells: list[CellRecord], *, model: str, model_sha256: str,
                     backend: str) -> None:
        """The frame and its new cells in one durable transaction."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO frames (session_id, seq, captured_at, kept, reason, focus, clipped, "
                "cast, cells_found, cells_new, moved) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, frame.seq, frame.captured_at, int(frame.kept), frame.reason,
                 frame.focus, frame.clipped, frame.cast, frame.cells_found, frame.cells_new,
                 int(frame.moved)),
            )
            frame_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO cells (session_id, frame_id, x0, y0, x1, y1, class, class_index, "
                "confidence, probabilities, flags, model, model_sha256, backend, latency_ms, "
                "crop_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (session_id, frame_id, *cell.box, cell.class_name, cell.class_index,
                     round(cell.confidence, 6),
                     json.dumps([round(p, 6) for p in cell.probabilities]),
                     ",".join(cell.flags), model, model_sha256, backend,
                     round(cell.latency_ms, 3), cell.crop_path)
                    for cell in cells
                ],
            )

    def finish_session(self, session_id: int, *, status: str = "finished",
                       reason: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE sessions SET status = ?, end_reason = ?, ended_at = ? WHERE id = ?",
                (status, reason, now_iso(), session_id),
            )

    def record_red_cells(self, session_id: int, diameter_px: float, measured: int) -> None:
        """The session's red-cell diameter in frame pixels and how many red cells gave it."""
        with self._transaction() as db:
            db.execute("UPDATE sessions SET red_cell_px = ?, red_cells_measured = ? WHERE id = ?",
                       (round(diameter_px, 2), measured, session_id))

    def mark_interrupted(self) -> int:
        """Sessions left 'running' by a process that died (power cut, kill): 'interrupted'."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE sessions SET status = 'interrupted', end_reason = 'process stopped "
                "without closing the session', ended_at = ? WHERE status = 'running'",
                (now_iso(),),
            )
        return cursor.rowcount

    def review_cell(self, cell_id: int, *, reviewer: str, new_class: str | None = None,
                    not_a_cell: bool = False) -> dict[str, Any]:
        """Record a person's verdict on a cell as a new row: confirm (no new_class), move to
        `new_class`, or mark as not a cell. Returns the cell with its reviewed label."""
        if not reviewer.strip():
            raise StorageError("a review needs the reviewer's name")
        with self._transaction() as db:
            row = db.execute("SELECT cells.id, cells.session_id, cells.class, sessions.classes "
                             "FROM cells JOIN sessions ON sessions.id = cells.session_id "
                             "WHERE cells.id = ?", (cell_id,)).fetchone()
            if row is None:
                raise StorageError(f"no cell {cell_id}")
            classes = json.loads(row["classes"])
            current = self._reviewed_label(db, cell_id) or row["class"]
            if not_a_cell:
                action, label = "not_a_cell", NOT_A_CELL
            elif new_class is None or new_class == row["class"]:
                action, label = "confirm", row["class"]
            else:
                if new_class not in classes:
                    raise StorageError(f"{new_class!r} is not one of this model's classes: "
                                       f"{', '.join(classes)}")
                action, label = "reclassify", new_class
            db.execute(
                "INSERT INTO reviews (cell_id, session_id, reviewer, at, action, old_class, "
                "new_class) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cell_id, row["session_id"], reviewer.strip(), now_iso(), action, current, label),
            )
        return {"id": cell_id, "class": row["class"], "reviewed_class": label, "action": action}

    @staticmethod
    def _reviewed_label(db: sqlite3.Connection, cell_id: int) -> str | None:
        row = db.execute("SELECT new_class FROM reviews WHERE cell_id = ? ORDER BY id DESC "
                         "LIMIT 1", (cell_id,)).fetchone()
        return row[0] if row else None

    def sign_off(self, session_id: int, *, reviewer: str, note: str | None = None) -> None:
        if not reviewer.strip():
            raise StorageError("a sign-off needs the reviewer's name")
        with self._transaction() as db:
            db.execute("INSERT INTO signoffs (session_id, reviewer, at, note) VALUES (?, ?, ?, ?)",
                       (session_id, reviewer.strip(), now_iso(), note))

    def signoffs(self, session_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT reviewer, at, note FROM signoffs WHERE session_id = ? "
                                "ORDER BY id", (session_id,)).fetchall()
        return [dict(row) for row in rows]

    def reviews(self, session_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM reviews WHERE session_id = ? ORDER BY id",
                                (session_id,)).fetchall()
        return [dict(row) for row in rows]

    # reading

    def sessions(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM sessions ORDER BY id").fetchall()
        return [self._session_dict(row) for row in rows]

    def session(self, key: str | int | None = None) -> dict[str, Any]:
        """A session by uid, row id, or the latest one when `key` is None."""
        if key is None:
            row = self._db.execute("SELECT * FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        elif isinstance(key, int) or str(key).isdigit():
            row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (int(key),)).fetchone()
        else:
            row = self._db.execute("SELECT * FROM sessions WHERE uid = ?", (key,)).fetchone()
        if row is None:
            known = ", ".join(s["uid"] for s in self.sessions()[-5:]) or "none yet"
            what = "no session recorded yet" if key is None else f"no session {key!r}"
            raise StorageError(f"{self.path}: {what} (latest: {known})")
        return self._session_dict(row)

    def _session_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["classes"] = json.loads(out["classes"])
        out["settings"] = json.loads(out["settings"])
        return out

    def cells(self, session_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT cells.*, frames.seq AS frame, (SELECT new_class FROM reviews WHERE "
            "reviews.cell_id = cells.id ORDER BY reviews.id DESC LIMIT 1) AS reviewed_class "
            "FROM cells JOIN frames ON frames.id = cells.frame_id WHERE cells.session_id = ? "
            "ORDER BY cells.id",
            (session_id,),
        ).fetchall()
        out = []
        for row in rows:
            cell = dict(row)
            cell["probabilities"] = json.loads(cell["probabilities"])
            cell["flags"] = [f for f in cell["flags"].split(",") if f]
            cell["bbox"] = [cell.pop(k) for k in ("x0", "y0", "x1", "y1")]
            out.append(cell)
        return out

    def crop_path(self, cell_id: int) -> str | None:
        """The crop image of a cell, relative to the state directory (None: not saved)."""
        row = self._db.execute("SELECT crop_path FROM cells WHERE id = ?", (cell_id,)).fetchone()
        if row is None:
            raise StorageError(f"no cell {cell_id}")
        return row[0]

    def frame_summary(self, session_id: int) -> dict[str, Any]:
        kept, rejected = 0, {}
        for row in self._db.execute(
            "SELECT kept, reason, COUNT(*) FROM frames WHERE session_id = ? GROUP BY kept, reason",
            (session_id,),
        ):
            if row[0]:
                kept += int(row[2])
            else:
                rejected[row[1] or "unknown"] = int(row[2])
        return {"kept": kept, "rejected": rejected}

