"""The results database: schema and migrations, durable settings, round trip, full disk."""

import sqlite3
from collections import Counter

import pytest

from edgehemo.store import (
    CellRecord,
    DiskGuard,
    FrameRecord,
    ResultStore,
    SessionInfo,
    StorageError,
)
from edgehemo.store.schema import SCHEMA_VERSION

INFO = SessionInfo(source="test", model="m_int8", model_sha256="ab" * 32, backend="cpu",
                   classes=("a", "b"), sample_id="S1")
MODEL = {"model": "m_int8", "model_sha256": "ab" * 32, "backend": "cpu"}


def cell(name="a", confidence=0.9):
    return CellRecord(box=(1, 2, 30, 40), class_name=name, class_index=0 if name == "a" else 1,
                      confidence=confidence, probabilities=(confidence, 1 - confidence),
                      latency_ms=1.5, flags=("low_confidence",) if confidence < 0.6 else ())


def test_new_database_is_wal_full_sync_and_at_the_latest_schema(tmp_path):
    with ResultStore.in_dir(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.integrity_check() == "ok"


def test_round_trip_of_a_session(tmp_path):
    with ResultStore.in_dir(tmp_path) as store:
        session_id, uid = store.start_session(INFO)
        store.record_frame(session_id, FrameRecord(seq=1, captured_at=1.0, kept=True,
                                                   cells_found=2, cells_new=2),
                           [cell("a"), cell("b", 0.55)], **MODEL)
        store.record_frame(session_id, FrameRecord(seq=2, captured_at=2.0, kept=False,
                                                   reason="out of focus"), [], **MODEL)
        store.finish_session(session_id, reason="done")
        assert Counter(c["class"] for c in store.cells(session_id)) == {"a": 1, "b": 1}
        assert store.frame_summary(session_id) == {"kept": 1, "rejected": {"out of focus": 1}}
        cells = store.cells(session_id)
        assert cells[1]["flags"] == ["low_confidence"] and cells[1]["bbox"] == [1, 2, 30, 40]
        assert cells[0]["frame"] == 1 and cells[0]["probabilities"] == [0.9, pytest.approx(0.1)]
        assert store.session(uid)["status"] == "finished"
        assert store.session()["uid"] == uid  # latest
        with pytest.raises(StorageError, match="no session 'nope'"):
            store.session("nope")


def test_sessions_left_running_are_marked_interrupted(tmp_path):
    with ResultStore.in_dir(tmp_path) as store:
        store.start_session(INFO)
    with ResultStore.in_dir(tmp_path) as store:
        assert store.mark_interrupted() == 1
        assert store.session()["status"] == "interrupted"


def test_a_newer_schema_is_refused(tmp_path):
    ResultStore.in_dir(tmp_path).close()
    db = sqlite3.connect(tmp_path / "edgehemo.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="newer than this edgehemo"):
        ResultStore.in_dir(tmp_path)


def test_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "edgehemo.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open the results database"):
        ResultStore.in_dir(tmp_path)


def test_full_disk_is_a_storage_error_and_keeps_what_was_committed(tmp_path):
    with ResultStore.in_dir(tmp_path) as store:
        session_id, _ = store.start_session(INFO)
        store.record_frame(session_id, FrameRecord(seq=1, captured_at=1.0, kept=True),
                           [cell()], **MODEL)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # the database cannot grow
        with pytest.raises(StorageError, match="disk is full"):
            for seq in range(2, 500):
                store.record_frame(session_id, FrameRecord(seq=seq, captured_at=1.0, kept=True),
                                   [cell()] * 20, **MODEL)
    with ResultStore.in_dir(tmp_path) as store:
        assert store.integrity_check() == "ok"
        assert Counter(c["class"] for c in store.cells(session_id))["a"] >= 1


def test_disk_guard_pauses_under_the_reserve_and_resumes_above_the_hysteresis(tmp_path):
    free = [500, 150, 250, 299, 320, 100]
    guard = DiskGuard(tmp_path, reserve_mb=200, resume_mb=300, check_every_s=0,
                      free_bytes=lambda _: free.pop(0) * 2**20)
    assert [guard.check() for _ in range(6)] == [True, False, False, False, True, False]
    with pytest.raises(ValueError, match="resume_mb"):
        DiskGuard(tmp_path, reserve_mb=200, resume_mb=100)


def test_readers_never_create_a_database(tmp_path):
    with pytest.raises(StorageError, match="no results in"):
        ResultStore.existing(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_a_database_of_the_previous_schema_gains_the_red_cell_columns_and_keeps_its_rows(
        tmp_path):
    from edgehemo.store.schema import MIGRATIONS

    db = sqlite3.connect(tmp_path / "edgehemo.db")
    for number, migration in enumerate(MIGRATIONS[:2], start=1):  # as edgehemo left it before
        db.executescript(migration)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute("INSERT INTO sessions (uid, started_at, status, source, model, model_sha256, "
               "backend, classes, settings) VALUES ('old', 'then', 'finished', 's', 'm', 'x', "
               "'cpu', '[\"a\"]', '{}')")
    db.commit()
    db.close()
    with ResultStore.in_dir(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        old = store.session("old")
        assert old["red_cell_px"] is None and old["red_cells_measured"] is None
        session_id, uid = store.start_session(INFO)
        store.record_red_cells(session_id, 88.614, 107)
        assert (store.session(uid)["red_cell_px"], store.session(uid)["red_cells_measured"]) == (
            88.61, 107)


@pytest.mark.parametrize(("settings", "views"), [
    ({"capture": {"tta": "auto"}, "views": "stain"}, "stain"),
    ({"capture": {"tta": "stain"}}, "stain"),  # sessions recorded before the auto setting
    ({"capture": {"tta": True}}, "mirror"),  # sessions recorded before 1 Dec 2026
    ({"capture": {"tta": False}}, "none"),
    ({}, "none"),  # before test-time views existed
])
def test_results_name_the_test_time_views_of_old_and_new_sessions(tmp_path, settings, views):
    from dataclasses import replace

    from edgehemo.results import differential_lines, session_results

    with ResultStore.in_dir(tmp_path) as store:
        store.start_session(replace(INFO, settings=settings))
        summary = session_results(store)
    assert summary["views"] == views
    assert f"views {views})" in differential_lines(summary)[0]
