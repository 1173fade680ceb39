"""Screenshots of the report and the review page for the docs, from a capture of the demo clip.

    python scripts/screenshots.py --out docs/img

Needs Chromium (`apt install chromium`) and playwright (`pip install playwright`; no browser
download: the system Chromium is used).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

from edgehemo.device.config import CaptureConfig
from edgehemo.device.daemon import CaptureDaemon
from edgehemo.device.review import make_server
from edgehemo.report import find_chromium

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        clip = REPO / "edge" / "samples" / "clip" / "bccd_demo.avi"
        config = CaptureConfig.model_validate({"capture": {
            "model": "cbam_cnn_int8", "source": str(clip), "sample_id": "DEMO-1",
            "operator": "demo"}})
        uid = CaptureDaemon(config, state).run().session_uid
        server, _ = make_server(state, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=find_chromium(), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 412, "height": 915})
            page.goto(f"{base}/session/{uid}")
            page.fill("#reviewer", "demo reviewer")
            page.screenshot(path=str(args.out / "review_page.png"), full_page=False)
            page.goto(f"{base}/report/{uid}")
            page.screenshot(path=str(args.out / "report.png"), full_page=False)
            browser.close()
        server.shutdown()
    print(f"wrote {args.out / 'review_page.png'} and {args.out / 'report.png'}")


if __name__ == "__main__":
    main()
