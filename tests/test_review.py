"""Report and review page on a real captured session: HTTP API, append-only reviews, sign-off,
token, export of reviewed cells for training, and a headless Chromium as a reviewer uses it."""

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edgehemo.device.config import CaptureConfig
from edgehemo.device.daemon import CaptureDaemon
from edgehemo.device.review import export_reviewed, make_server
from edgehemo.report import find_chromium, html_to_pdf, render_report
from edgehemo.results import session_results
from edgehemo.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def state(tmp_path_factory, clip_path) -> Path:
    """A fresh state directory holding one captured session of the bundled clip (8 cells)."""
    directory = tmp_path_factory.mktemp("state")
    config = CaptureConfig.model_validate(
        {"capture": {"model": "cbam_cnn_int8", "source": str(clip_path), "sample_id": "S-7"}})
    CaptureDaemon(config, directory).run()
    return directory


@pytest.fixture()
def server(state):
    httpd, _ = make_server(state, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def request(url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


POST = {"X-Edgehemo": "1", "Content-Type": "application/json"}


def test_reviews_are_new_rows_and_counts_follow_them(state, server):
    status, page, _ = request(server + "/")
    assert status == 200 and b"S-7" in page
    with ResultStore.in_dir(state) as store:
        cells = store.cells(1)
        before = [(c["id"], c["class"], c["confidence"]) for c in cells]
    first, second = cells[0], cells[1]
    target = "neutrophil" if first["class"] != "neutrophil" else "lymphocyte"
    status, body, _ = request(f"{server}/api/cells/{first['id']}/review",
                              {"reviewer": "Ana", "action": "reclassify", "new_class": target},
                              POST)
    assert status == 200 and json.loads(body)["reviewed_class"] == target
    assert request(f"{server}/api/cells/{second['id']}/review",
                   {"reviewer": "Ana", "action": "not_a_cell"}, POST)[0] == 200
    assert request(f"{server}/api/cells/{second['id']}/review",
                   {"reviewer": "Ana", "action": "reclassify", "new_class": "nonsense"},
                   POST)[0] == 400
    assert request(f"{server}/api/cells/{first['id']}/review",
                   {"reviewer": "", "action": "confirm"}, POST)[0] == 400
    # a cross-site form cannot set the header: refused
    assert request(f"{server}/api/cells/{first['id']}/review",
                   {"reviewer": "Eve", "action": "confirm"}, {})[0] == 403
    assert request(f"{server}/api/sessions/1/signoff", {"reviewer": "Ana", "note": "ok"},
                   POST)[0] == 200
    with ResultStore.in_dir(state) as store:
        after = [(c["id"], c["class"], c["confidence"]) for c in store.cells(1)]
        reviews = store.reviews(1)
        data = session_results(store, 1)
    assert after == before  # the model's output is never overwritten
    assert [(r["reviewer"], r["action"], r["old_class"], r["new_class"]) for r in reviews] == [
        ("Ana", "reclassify", first["class"], target),
        ("Ana", "not_a_cell", second["class"], "not_a_cell"),
    ]
    assert all(r["at"] for r in reviews)
    assert sum(data["counts"].values()) == 7 and data["counts"][target] >= 1
    assert sum(data["model_counts"].values()) == 8
    assert data["signoffs"][0]["reviewer"] == "Ana" and data["reviewed_cells"] == 2
    status, page, _ = request(f"{server}/report/{data['uid']}")
    assert status == 200 and b"signed off by Ana" in page
    status, image, headers = request(f"{server}/crop/{first['id']}")
    assert status == 200 and image[:2] == b"\xff\xd8" and headers["Content-Type"] == "image/jpeg"
    assert request(f"{server}/crop/9999")[0] == 404
    assert request(f"{server}/session/nope")[0] == 404


def test_beyond_localhost_a_token_is_required(state):
    httpd, token = make_server(state, "127.0.0.1", 0, token="s3cret")
    assert token == "s3cret"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert request(base + "/")[0] == 401
        status, _, headers = request(base + "/?token=s3cret")
        assert status == 200 and "edgehemo_token=s3cret" in headers["Set-Cookie"]
        assert request(base + "/", headers={"Cookie": "edgehemo_token=s3cret"})[0] == 200
        assert request(base + "/?token=wrong")[0] == 401
    finally:
        httpd.shutdown()
        httpd.server_close()
    generated = make_server(state, "0.0.0.0", 0)
    assert generated[1] and len(generated[1]) >= 16
    generated[0].server_close()


def test_report_is_one_self_contained_file(state, tmp_path):
    with ResultStore.in_dir(state) as store:
        data = session_results(store, None)
    page = render_report(data, state)
    assert "must be confirmed by a qualified person" in page and "S-7" in page
    assert page.count("data:image/jpeg;base64,") == 8
    assert "http://" not in page and "https://" not in page and "<svg" in page
    assert "Not counted in this session: platelet" in page  # the finder cuts no platelet
    assert "<td>platelet</td>" not in page
    # the views the answers averaged (the session's own, cbam_cnn_int8's: stain hues)
    assert "<td>Test-time views</td><td>eight stain hues averaged (8 runs)</td>" in page
    assert "<td>Site adaptation</td><td>none</td>" in page  # the shipped model, not adapted
    result = subprocess.run(
        [sys.executable, "-m", "edgehemo.cli", "report", "--state-dir", str(state), "--out",
         str(tmp_path / "r.html")], capture_output=True, text=True)
    assert result.returncode == 0 and (tmp_path / "r.html").read_text() == page
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine: the PDF path cannot run")
    html_to_pdf(page, tmp_path / "r.pdf")
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"


def test_reviewed_cells_train_a_model(state, tmp_path):
    with ResultStore.in_dir(state) as store:
        cells = store.cells(1)
        for index, cell in enumerate(cells):
            label = "neutrophil" if index % 2 else "lymphocyte"
            store.review_cell(cell["id"], reviewer="Ana", new_class=label)
    folder = tmp_path / "reviewed"
    exported = export_reviewed(state, [], folder)
    assert exported == {"lymphocyte": 4, "neutrophil": 4}
    # enough images per class for a training smoke run: repeat them
    for image in list(folder.glob("*/*.jpg")):
        for copy in range(3):
            shutil.copy(image, image.with_name(f"{image.stem}-{copy}.jpg"))
    result = subprocess.run(
        [sys.executable, "-m", "edgehemo.cli", "train", "cnn", "--data", str(folder), "--out",
         str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8", "--threads", "1",
         "--ema", "0"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["classes"] == ["lymphocyte", "neutrophil"]


def test_a_reviewer_in_chromium_moves_a_cell_and_signs_off(state, server, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine (apt install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with ResultStore.in_dir(state) as store:
        cell = store.cells(1)[0]
        uid = store.session(1)["uid"]
    target = "monocyte" if cell["class"] != "monocyte" else "lymphocyte"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 412, "height": 900})  # a phone
        page.goto(f"{server}/")
        page.click(f"text={uid}")
        page.fill("#reviewer", "Dr Okafor")
        page.select_option(f"#class-{cell['id']}", target)
        page.click(f"#cell-{cell['id']} >> text=Move")
        page.wait_for_selector(f"#status-{cell['id']}:has-text('moved to {target}')")
        # the counts refresh in a second request after the status line changes
        page.wait_for_function(
            f"document.getElementById('count-{target}').textContent !== '0'", timeout=10_000)
        assert page.inner_text(f"#count-{target}") != "0"
        page.fill("#note", "checked all cells")
        page.click("#signoff")
        page.wait_for_selector("#signed:has-text('Signed off by Dr Okafor')")
        page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        page.goto(f"{server}/report/{uid}")
        assert "signed off by Dr Okafor" in page.content()
        browser.close()
    with ResultStore.in_dir(state) as store:
        reviews = store.reviews(1)
        signoffs = store.signoffs(1)
    assert (reviews[-1]["reviewer"], reviews[-1]["new_class"]) == ("Dr Okafor", target)
    assert signoffs[0]["note"] == "checked all cells"
    assert (tmp_path / "review.png").stat().st_size > 10_000


def test_live_view_shows_the_current_frame_and_figures(state, server):
    status, image, _ = request(server + "/live.jpg")
    assert status == 200 and image[:2] == b"\xff\xd8"
    status, body, _ = request(server + "/api/live")
    figures = json.loads(body)
    assert status == 200 and {"focus", "focus_min", "clipped", "cast", "ok", "counts"} <= set(
        figures)
    assert sum(figures["counts"].values()) >= 1
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine (apt install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(server + "/live")
        page.wait_for_selector("#figures td:has-text('focus')")
        assert "white cells" in page.inner_text("#count")
        assert page.evaluate("document.getElementById('frame').naturalWidth") > 0
        browser.close()


def test_report_with_gradcam_from_the_source_checkpoint_only(state, tmp_path):
    from edgehemo.errors import CheckpointError
    from edgehemo.train.explain import session_overlays

    with ResultStore.in_dir(state) as store:
        data = session_results(store, None)
    overlays = session_overlays("cbam_cnn", data, state)
    assert len(overlays) == 8 and all(o[:2] == b"\xff\xd8" for o in overlays.values())
    page = render_report(data, state, overlays)
    assert page.count("Grad-CAM of cell") == 8
    with pytest.raises(CheckpointError, match="not the checkpoint"):
        session_overlays("se_cnn", data, state)


def test_the_review_page_counts_platelets_only_once_a_reviewer_gives_one(state, server):
    with ResultStore.in_dir(state) as store:
        uid, first = session_results(store, 1)["uid"], store.cells(1)[0]
    _, page, _ = request(f"{server}/session/{uid}")
    assert b"not counted in this session: platelet" in page
    assert b"id='count-platelet'" not in page and b"<option value='platelet'" in page
    assert request(f"{server}/api/cells/{first['id']}/review",
                   {"reviewer": "Ana", "action": "reclassify", "new_class": "platelet"},
                   POST)[0] == 200
    _, page, _ = request(f"{server}/session/{uid}")
    assert b"id='count-platelet'>1<" in page and b"not counted in this session" not in page
