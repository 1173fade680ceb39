"""The results database schema, as numbered migrations; `PRAGMA user_version` holds the number.

A migration is applied inside one transaction together with the version bump, so a database is
always at a version whose whole schema exists. Never edit a released migration: append one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions, frames and cells
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        sample_id TEXT,
        operator TEXT,
        notes TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted')),
        end_reason TEXT,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        backend TEXT NOT NULL,
        classes TEXT NOT NULL,
        target_count INTEGER,
        settings TEXT NOT NULL
    );
    CREATE TABLE frames (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        seq INTEGER NOT NULL,
        captured_at REAL NOT NULL,
        kept INTEGER NOT NULL,
        reason TEXT,
        focus REAL,
        clipped REAL,
        cast REAL,
        cells_found INTEGER NOT NULL DEFAULT 0,
        cells_new INTEGER NOT NULL DEFAULT 0,
        moved INTEGER NOT NULL DEFAULT 0,
        UNIQUE (session_id, seq)
    );
    CREATE TABLE cells (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        frame_id INTEGER NOT NULL REFERENCES frames(id),
        x0 INTEGER NOT NULL, y0 INTEGER NOT NULL, x1 INTEGER NOT NULL, y1 INTEGER NOT NULL,
        class TEXT NOT NULL,
        class_index INTEGER NOT NULL,
        confidence REAL NOT NULL,
        probabilities TEXT NOT NULL,
        flags TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        backend TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        crop_path TEXT
    );
    CREATE INDEX cells_by_session ON cells(session_id);
    CREATE INDEX frames_by_session ON frames(session_id);
    """,
    # 2: a person's review of the model's output, append-only: the model's rows are never changed
    """
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        cell_id INTEGER NOT NULL REFERENCES cells(id),
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        reviewer TEXT NOT NULL,
        at TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('confirm', 'reclassify', 'not_a_cell')),
        old_class TEXT NOT NULL,
        new_class TEXT NOT NULL
    );
    CREATE INDEX reviews_by_cell ON reviews(cell_id);
    CREATE TABLE signoffs (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        reviewer TEXT NOT NULL,
        at TEXT NOT NULL,
        note TEXT
    );
    """,
    # 3: the session's magnification, as its lone red cells measured it (edgehemo.ruler)
    """
    ALTER TABLE sessions ADD COLUMN red_cell_px REAL;
    ALTER TABLE sessions ADD COLUMN red_cells_measured INTEGER;
    """,
)

NOT_A_CELL = "not_a_cell"

SCHEMA_VERSION = len(MIGRATIONS)
