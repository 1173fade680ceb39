"""The capture daemon end to end with the shipped int8 model on onnxruntime: the bundled clip,
folders, a failing source, a full disk, signals, sd_notify and the CLI around it."""

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import field_frame

from edgehemo.device.config import CaptureConfig
from edgehemo.device.daemon import CaptureDaemon
from edgehemo.device.sources import SourceError, SourceUnavailableError, open_source
from edgehemo.device.status import read_status
from edgehemo.store import ResultStore

EDGEHEMO = [sys.executable, "-m", "edgehemo.cli"]


def run_cli(*args, check=True, env=None):
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    result = subprocess.run([*EDGEHEMO, *map(str, args)], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def config(**capture) -> CaptureConfig:
    return CaptureConfig.model_validate({"capture": {"model": "cbam_cnn_int8", **capture}})


def write_frames(folder: Path, frames, start=0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=start):
        cv2.imwrite(str(folder / f"frame{index:03d}.jpg"), frame)


def test_capture_of_the_bundled_clip_counts_each_cell_once(tmp_path, clip_path):
    state = tmp_path / "state"
    out = run_cli("capture", "--model", "cbam_cnn_int8", "--source", clip_path, "--state-dir",
                  state, "--sample-id", "S-1", "--json").stdout
    session = json.loads(out)
    assert session["status"] == "finished" and "end of video" in session["end_reason"]
    assert session["frames"] == {"kept": 36, "rejected": {"out of focus": 10}}
    assert sum(session["counts"].values()) == 8 == len(session["cells"])
    for cell in session["cells"]:
        assert set(cell) >= {"class", "confidence", "bbox", "frame"}
        assert 0 < cell["confidence"] <= 1 and len(cell["bbox"]) == 4
        image = cv2.imread(str(state / cell["crop"]))
        assert image is not None and image.shape[0] == image.shape[1]
    assert sorted({c["frame"] for c in session["cells"]}) == [1, 9, 17, 25, 33, 41]

    exported = json.loads(run_cli("results", "--json", "--state-dir", state).stdout)
    assert exported["sessions"][0]["counts"] == session["counts"]
    rows = run_cli("results", "--csv", "--state-dir", state).stdout.strip().splitlines()
    assert rows[0].startswith("session,sample_id,cell_id,frame,class") and len(rows) == 9
    table = run_cli("results", "--state-dir", state).stdout
    assert "white cells" in table and "qualified person must confirm" in table
    status = run_cli("status", "--state-dir", state, check=False)
    assert status.returncode == 3 and "not running" in status.stdout


def test_capture_answers_name_no_platelet_unless_told_every_class(tmp_path, clip_path):
    # the finder drops platelet-sized objects, so by default no cell it cuts is called one
    plain = json.loads(run_cli("capture", "--source", clip_path, "--state-dir",
                               tmp_path / "plain", "--json").stdout)
    assert "platelet" not in {cell["class"] for cell in plain["cells"]}
    assert plain["answer_classes"] == [c for c in plain["classes"] if c != "platelet"]
    table = run_cli("results", "--state-dir", tmp_path / "plain").stdout
    assert "not counted in this session: platelet" in table
    assert not any(line.startswith("platelet ") for line in table.splitlines())
    every = json.loads(run_cli("capture", "--source", clip_path, "--state-dir",
                               tmp_path / "every", "--set", "capture.classes=all",
                               "--json").stdout)
    assert len(every["cells"]) == len(plain["cells"])  # the same cells, other answers
    assert every["counts"]["platelet"] > 0  # BCCD's small dark cells, read as platelets
    assert every["answer_classes"] == every["classes"]
    assert "not counted" not in run_cli("results", "--state-dir", tmp_path / "every").stdout
    changed = [(a["class"], b["class"]) for a, b in zip(every["cells"], plain["cells"],
                                                        strict=True) if a["class"] != b["class"]]
    assert changed and all(was == "platelet" for was, _ in changed)


def test_capture_averages_stain_views_unless_told_and_can_count_white_cells_only(
        tmp_path, clip_path):
    def capture(name, *settings):
        sets = [arg for setting in settings for arg in ("--set", setting)]
        return json.loads(run_cli("capture", "--source", clip_path, "--state-dir",
                                  tmp_path / name, *sets, "--json").stdout)

    def settings(name):
        with ResultStore.existing(tmp_path / name) as store:
            return store.session()["settings"]

    averaged, one = capture("averaged"), capture("one", "capture.tta=false")
    assert settings("averaged")["capture"]["tta"] == "auto"  # the default: the model's views
    assert settings("averaged")["views"] == "stain"
    assert (settings("one")["capture"]["tta"], settings("one")["views"]) == ("none", "none")
    assert (averaged["views"], one["views"]) == ("stain", "none")
    listed = run_cli("results", "--state-dir", tmp_path / "averaged").stdout
    assert "views stain" in listed
    assert len(one["cells"]) == len(averaged["cells"])  # the same cells, averaged or not
    gaps = [abs(a["probabilities"][name] - b["probabilities"][name])
            for a, b in zip(one["cells"], averaged["cells"], strict=True)
            for name in a["probabilities"]]
    assert max(gaps) > 1e-3
    told = capture("told", "capture.classes=white_cells")
    assert len(told["cells"]) == len(averaged["cells"])
    assert not {"platelet", "erythroblast"} & {cell["class"] for cell in told["cells"]}
    assert settings("told")["capture"]["classes"] == "white_cells"
    assert "erythroblast" not in settings("told")["answer_classes"]
    typo = run_cli("capture", "--source", clip_path, "--state-dir", tmp_path / "typo",
                   "--set", "capture.classes=white_cell", check=False)
    assert typo.returncode == 2 and "unknown class(es) white_cell" in typo.stderr


def test_folder_source_skips_what_is_not_an_image(tmp_path, clip_frames, caplog):
    folder = tmp_path / "captures"
    write_frames(folder, [field_frame(clip_frames, f) for f in (0, 2, 3)])
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with caplog.at_level(logging.WARNING):
        summary = CaptureDaemon(config(source=str(folder)), tmp_path / "state").run()
    assert summary.frames == 3 and summary.kept == 3
    assert sum(n for _, n, _ in summary.differential) == 4
    assert "notes.txt: not an image file" in caplog.text
    assert "broken.jpg: not a readable image" in caplog.text


def test_a_source_that_disappears_is_reopened_when_it_returns(tmp_path, clip_frames):
    folder, away = tmp_path / "captures", tmp_path / "moved"
    state = tmp_path / "state"
    write_frames(folder, [field_frame(clip_frames, 0), field_frame(clip_frames, 2)])
    seen = {}

    def unplug_and_replug():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = read_status(state) or {}
            if status.get("frames", 0) >= 2:
                break
            time.sleep(0.1)
        folder.rename(away)
        while time.monotonic() < deadline:
            status = read_status(state) or {}
            if status.get("camera_error"):
                seen["offline"] = status
                break
            time.sleep(0.1)
        away.rename(folder)
        write_frames(folder, [field_frame(clip_frames, 3), field_frame(clip_frames, 4)], start=2)

    helper = threading.Thread(target=unplug_and_replug)
    helper.start()
    summary = CaptureDaemon(config(source=str(folder), watch=True, max_frames=4), state).run()
    helper.join()
    assert summary.frames == 4 and summary.source_outages >= 1
    assert "the image folder is gone" in seen["offline"]["camera_error"]
    assert seen["offline"]["running"] is True and seen["offline"]["camera_online"] is False


def test_disk_under_the_reserve_pauses_images_but_keeps_results(tmp_path, clip_path,
                                                                 monkeypatch, caplog):
    free = iter([0, 0, 0] + [10**12] * 100)
    monkeypatch.setattr("edgehemo.store.diskguard.shutil.disk_usage",
                        lambda _: shutil._ntuple_diskusage(1, 1, next(free)))
    settings = config(source=str(clip_path))
    settings.storage.disk_check_s = 0
    with caplog.at_level(logging.WARNING):
        summary = CaptureDaemon(settings, tmp_path).run()
    # new cells appear in 6 fields: 2 + 2 + 1 while the disk is "full", then 1 + 1 + 1
    assert summary.crops_not_saved == 5 and summary.crops_saved == 3
    with ResultStore.in_dir(tmp_path) as store:
        cells = store.cells(summary.session_id)
    assert len(cells) == 8
    assert [c["crop_path"] is None for c in cells] == [True] * 5 + [False] * 3
    assert "crop images paused" in caplog.text and "crop images resumed" in caplog.text


def _start_capture(state: Path, clip_path: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [*EDGEHEMO, "capture", "--model", "cbam_cnn_int8", "--source", str(clip_path), "--loop",
         "--state-dir", str(state), "--set", "quality.min_focus=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )


def _wait_for_frames(state: Path, process: subprocess.Popen, frames: int = 1) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = read_status(state)
        if status and status["pid"] == process.pid and status["frames"] >= frames:
            return
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode())
        time.sleep(0.05)
    raise AssertionError("the capture never reported a frame")


def test_kill_9_at_random_moments_loses_no_committed_result(tmp_path, clip_path):
    import random

    state = tmp_path / "state"
    rng = random.Random(7)
    for _ in range(20):
        process = _start_capture(state, clip_path)
        _wait_for_frames(state, process)
        time.sleep(rng.uniform(0.0, 0.4))
        reader = ResultStore.in_dir(state)
        committed = reader._db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        frames = reader._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        reader.close()
        process.send_signal(signal.SIGKILL)
        process.wait()
        with ResultStore.in_dir(state) as store:
            assert store.integrity_check() == "ok"
            assert store._db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] >= committed
            assert store._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] >= frames
            paths = [r[0] for r in store._db.execute("SELECT crop_path FROM cells")]
        for path in paths:  # every crop a row names is complete
            assert cv2.imread(str(state / path)) is not None, path
    with ResultStore.in_dir(state) as store:
        assert store.mark_interrupted() == 1  # the last one; the others were marked on restart
        statuses = {s["status"] for s in store.sessions()}
        assert statuses == {"interrupted"} and len(store.sessions()) == 20
    # no crop image is half-written: anything named .jpg decodes
    for image in (state / "crops").glob("*/*.jpg"):
        assert cv2.imread(str(image)) is not None, image


def test_sigterm_finishes_the_frame_and_sd_notify_sees_ready_watchdog_status(tmp_path,
                                                                            clip_path):
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    state = tmp_path / "state"
    process = _start_capture(state, clip_path, env={"NOTIFY_SOCKET": str(sock_path),
                                                    "WATCHDOG_USEC": "400000"})
    messages: list[str] = []

    def listen() -> None:  # like systemd, keep reading so the daemon's queue never fills
        with contextlib.suppress(OSError):
            while True:
                messages.append(listener.recv(4096).decode())

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("WATCHDOG=1" in m for m in messages) or not any(
            m.startswith("STATUS=") and "fps" in m for m in messages):
        assert time.monotonic() < deadline, messages
        time.sleep(0.05)
    assert messages[0].startswith("READY=1")
    _wait_for_frames(state, process, frames=5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stderr.read().decode()
    time.sleep(0.5)
    tail = messages[-5:]
    assert "STOPPING=1" in tail
    listener.close()
    with ResultStore.in_dir(state) as store:
        session = store.session()
    assert session["status"] == "finished" and session["end_reason"] == "stopped by SIGTERM"


def test_a_whole_frame_model_classifies_each_field_once(tmp_path, clip_path):
    weights = Path(__file__).parents[1] / "edge" / "weights"
    model = tmp_path / "field_model.onnx"
    shutil.copy(weights / "cbam_cnn_int8.onnx", model)
    manifest = json.loads((weights / "cbam_cnn_int8.onnx.json").read_text())
    manifest.update(name="field_model", file=model.name, takes="whole_frame")
    Path(f"{model}.json").write_text(json.dumps(manifest))
    state = tmp_path / "state"
    session = json.loads(run_cli("capture", "--model", model, "--source", clip_path,
                                 "--state-dir", state, "--json").stdout)
    # the clip holds 6 fields of view, each first kept at these frames; 640x480 frames
    assert sorted(c["frame"] for c in session["cells"]) == [1, 9, 17, 25, 33, 41]
    assert session["unit"] == "field"
    assert session["answer_classes"] == session["classes"]  # a field may show anything
    for cell in session["cells"]:
        assert cell["bbox"] == [0, 0, 640, 480]
        side = CaptureConfig().storage.crop_max_side  # the 480x480 centre, stored downscaled
        assert cv2.imread(str(state / cell["crop"])).shape[:2] == (side, side)
    table = run_cli("results", "--state-dir", state).stdout
    assert "each count below is one field of view" in table


def test_target_count_stops_the_session(tmp_path, clip_path):
    summary = CaptureDaemon(config(source=str(clip_path), target_count=2), tmp_path).run()
    assert summary.end_reason == "counted 2 white cells"
    assert summary.white_cells >= 2 and summary.frames < 46


def test_bad_input_gets_one_clear_line(tmp_path, clip_path):
    state = tmp_path / "state"
    broken = tmp_path / "broken.toml"
    broken.write_text('[capture]\nmodel = "cbam_cnn_int8"\n[quality]\nmin_focs = 3\n')
    result = run_cli("capture", "--config", broken, "--state-dir", state, check=False)
    assert result.returncode == 2 and "line 4: quality.min_focs: unknown key" in result.stderr
    corrupt = tmp_path / "models"
    shutil.copytree(Path(__file__).parents[1] / "edge" / "weights", corrupt,
                    ignore=shutil.ignore_patterns("*.pt", "*.tflite"))
    (corrupt / "cbam_cnn_int8.onnx").write_bytes(b"garbage")
    result = run_cli("capture", "--model", corrupt / "cbam_cnn_int8.onnx", "--source", clip_path,
                     "--state-dir", state, check=False)
    assert result.returncode == 2 and "truncated or replaced" in result.stderr
    result = run_cli("capture", "--source", tmp_path / "nothing.avi", "--state-dir", state,
                     check=False)
    assert result.returncode == 2 and "neither an existing file or folder" in result.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    result = run_cli("capture", "--source", notes, "--state-dir", state, check=False)
    assert result.returncode == 2 and "not a video file" in result.stderr
    assert "Traceback" not in result.stderr


def test_cameras_that_are_absent_say_so(tmp_path):
    usb = open_source("usb:57")
    with pytest.raises(SourceUnavailableError, match="is the microscope camera plugged in"):
        usb.open()
    with pytest.raises(SourceError, match="usb:N"):
        open_source("usb:first")
    picamera = open_source("picamera")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="apt install python3-picamera2"):
            picamera.open()
    else:  # pragma: no cover - only on a Raspberry Pi
        pytest.skip("picamera2 is installed: the absent-library path cannot be exercised")


def test_service_install_stages_a_verified_hardened_unit(tmp_path):
    root = tmp_path / "root"
    run_cli("service", "install", "--platform", "pi", "--root", root)
    unit = (root / "etc/systemd/system/edgehemo.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    executable = Path(exec_start.split("=", 1)[1].split()[0])
    assert executable.is_file() and os.access(executable, os.X_OK)
    for setting in ("Type=notify", "WatchdogSec=", "PrivateNetwork=yes", "ProtectSystem=strict",
                    "NoNewPrivileges=yes", "SupplementaryGroups=video", "StateDirectory=edgehemo"):
        assert setting in unit
    # Documentation= names the station guide this installation ships
    documentation = next(line for line in unit.splitlines() if line.startswith("Documentation="))
    guide = Path(documentation.removeprefix("Documentation=file://"))
    assert guide.read_text().startswith("# Setting up a microscope station")
    from edgehemo.tomlconfig import load_model

    loaded = load_model(CaptureConfig, root / "etc/edgehemo/edgehemo.toml")
    assert loaded == CaptureConfig()  # the written defaults read back as the defaults
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    unit_file = root / "etc/systemd/system/edgehemo.service"
    verify = subprocess.run(["systemd-analyze", "verify", str(unit_file)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit_file)],
                              capture_output=True, text=True)
    overall = security.stdout.split("Overall exposure level for")[1]
    exposure = float(overall.split(":")[1].split()[0])
    assert exposure < 2.0


def test_service_install_refuses_an_edgehemo_the_service_cannot_see(tmp_path, monkeypatch):
    from edgehemo.device import service
    from edgehemo.device.service import ServiceError, hidden_from_service, install

    monkeypatch.setattr(service.os, "geteuid", lambda: 1000)  # never a live install from here

    assert hidden_from_service(Path("/home/pi/venv/bin/edgehemo")) == Path("/home")
    assert hidden_from_service(Path("/root/venv/bin/edgehemo")) == Path("/root")
    assert hidden_from_service(Path("/opt/edgehemo/bin/edgehemo")) is None
    assert hidden_from_service(Path("/homestead/bin/edgehemo")) is None
    in_home = Path("/home/pi/edgehemo/bin/edgehemo")
    staged = install("pi", root=tmp_path, executable=in_home)  # staging says it, files written
    assert any(line.startswith(f"warning: {in_home} is under /home, which the service cannot "
                               "see") for line in staged.done)
    with pytest.raises(ServiceError, match="install edgehemo under /opt"):
        install("pi", executable=in_home)  # on the live system: refused before anything


def test_sd_notify_never_blocks_the_capture_loop(tmp_path, monkeypatch):
    from edgehemo.device.notify import SystemdNotifier

    sock_path = tmp_path / "unread.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))  # bound, never read: its queue fills after ~10 messages
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    notifier = SystemdNotifier()
    done = threading.Event()

    def flood() -> None:
        for index in range(200):
            notifier.status(f"frame {index}")
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(10), "a full notify queue blocked the sender"
    received = 0
    listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.recv(4096)
            received += 1
    assert 0 < received < 200
    listener.close()


def test_with_a_known_red_cell_size_the_windows_hold_the_training_windows_red_cells(clip_frames):
    from edgehemo.device.cellfinder import CellFinder
    from edgehemo.device.pipeline import FramePipeline
    from edgehemo.device.session import SlideSession
    from edgehemo.preprocess import PBC_CROP_FRACTION
    from edgehemo.ruler import RedCellRuler, pbc_window_side

    def windows(ruler):
        pipeline = FramePipeline(lambda crops: np.full((len(crops), 2), 0.5), ("a", "b"), 64,
                                 SlideSession(("a", "b")), ruler=ruler)
        outcome = pipeline.process(field_frame(clip_frames, 0))
        return [(c.crop[2] - c.crop[0], c.crop[3] - c.crop[1]) for c in outcome.found]

    by_nucleus = windows(None)
    by_ruler = windows(RedCellRuler(known=60.0))
    side = round(pbc_window_side(PBC_CROP_FRACTION, 60.0))
    assert len(by_ruler) == len(by_nucleus) == len(CellFinder().find(field_frame(clip_frames, 0)))
    assert by_ruler == [(side, side)] * len(by_nucleus) != by_nucleus


def test_the_session_records_what_its_red_cells_measured(tmp_path, clip_path, samples_dir):
    import shutil

    from edgehemo.ruler import PBC_RED_CELL_DIAMETER

    fields = tmp_path / "fields"  # PBC's fields, each a new one to the tracker
    fields.mkdir()
    for index, image in enumerate(sorted(samples_dir.glob("*/*.jpg"))[:12]):
        shutil.copy(image, fields / f"{index:02d}.jpg")
    state = tmp_path / "state"
    summary = CaptureDaemon(config(source=str(fields)), state).run()
    with ResultStore.existing(state) as store:
        session = store.session()
    # the fields the quality gate keeps (7 of 12) hold 14 lone red cells: fewer than the 30
    # that fix the figure, so the median of those measured is recorded
    assert 5 <= session["red_cells_measured"] == summary.red_cells_measured < 30
    assert abs(session["red_cell_px"] / PBC_RED_CELL_DIAMETER - 1) < 0.1
    assert read_status(state)["red_cell_px"] == round(session["red_cell_px"], 1)
    run_cli("report", "--state-dir", state, "--out", tmp_path / "r.html")
    line = f"red cells {session['red_cell_px']:.1f} px across (from {summary.red_cells_measured}"
    assert line in (tmp_path / "r.html").read_text()
    assert f"magnification: {line}" in run_cli("results", "--state-dir", state).stdout

    # the clip's still fields show one lone red cell, in six frames: it counts once, too few
    # to size a window by, so the session keeps the finder's windows
    still = tmp_path / "still"
    assert CaptureDaemon(config(source=str(clip_path)), still).run().red_cells_measured == 1
    with ResultStore.existing(still) as store:
        assert (store.session()["red_cell_px"], store.session()["red_cells_measured"]) == (
            None, None)

    known = tmp_path / "known"
    CaptureDaemon(CaptureConfig.model_validate({
        "capture": {"model": "cbam_cnn_int8", "source": str(clip_path)},
        "cellfinder": {"red_cell_px": 88.6}}), known).run()
    with ResultStore.existing(known) as store:
        assert (store.session()["red_cell_px"], store.session()["red_cells_measured"]) == (88.6, 0)
    assert "set for this microscope" in run_cli("results", "--state-dir", known).stdout

    by_nucleus = tmp_path / "by_nucleus"
    CaptureDaemon(CaptureConfig.model_validate({
        "capture": {"model": "cbam_cnn_int8", "source": str(clip_path)},
        "cellfinder": {"window": "nucleus"}}), by_nucleus).run()
    with ResultStore.existing(by_nucleus) as store:
        assert store.session()["red_cell_px"] is None


def test_a_class_that_was_no_answer_is_counted_once_a_reviewer_gives_it():
    from edgehemo.results import unanswered_classes

    session = {"answer_classes": ["lymphocyte", "neutrophil"],
               "counts": {"lymphocyte": 2, "neutrophil": 0, "platelet": 0}}
    assert unanswered_classes(session) == ["platelet"]
    session["counts"]["platelet"] = 1  # a reviewer corrected a cell to platelet
    assert unanswered_classes(session) == []


def test_the_finders_sizes_follow_the_sites_red_cells(tmp_path, clip_frames, samples_dir):
    from edgehemo.device.cellfinder import CellFinderSettings
    from edgehemo.device.pipeline import FramePipeline
    from edgehemo.device.session import SlideSession
    from edgehemo.ruler import RedCellRuler

    half = CellFinderSettings().at_red_cell(44.3)  # half BCCD's 88.6 px red cells
    assert (half.downscale, half.close_px, half.min_area_px) == (2, 4, 750)
    fixed = CellFinderSettings(sizes_follow_red_cells=False)
    assert fixed.at_red_cell(44.3) == fixed

    # the clip's six fields, and the same at half the magnification (another objective, or a
    # smaller camera): the default sizes drop most nuclei, sized by the red cells they do not
    def cells(name, fields, *settings):
        folder = tmp_path / name
        folder.mkdir()
        for index, frame in enumerate(fields):
            cv2.imwrite(str(folder / f"{index:02d}.png"), frame)
        sets = [arg for setting in settings for arg in ("--set", setting)]
        return len(json.loads(run_cli("capture", "--source", folder, "--state-dir",
                                      tmp_path / f"{name}-state", *sets, "--json").stdout)["cells"])

    fields = [field_frame(clip_frames, f) for f in range(6)]
    halved = [cv2.resize(f, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for f in fields]
    full = cells("full", fields)
    assert cells("half", halved) < full / 2
    assert cells("half-sized", halved, "cellfinder.red_cell_px=44.3") == full
    assert cells("half-fixed", halved, "cellfinder.red_cell_px=44.3",
                 "cellfinder.sizes_follow_red_cells=false") < full / 2

    # measured in the session: from the frame after the figure is fixed
    pipeline = FramePipeline(lambda crops: np.full((len(crops), 2), 0.5), ("a", "b"), 64,
                             SlideSession(("a", "b")), ruler=RedCellRuler(enough=3, first=1))
    for image in sorted(samples_dir.glob("*/*.jpg")):
        pipeline.process(cv2.imread(str(image)))
        if pipeline.ruler.diameter is not None:
            break
    expected = CellFinderSettings().at_red_cell(pipeline.ruler.diameter)
    assert pipeline.finder.settings == expected != CellFinderSettings()
