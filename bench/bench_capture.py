"""Capture pipeline speed, from decoded frame to committed results, at one thread.

    python bench/bench_capture.py --repeats 10 --markdown docs/results/bench_capture.md

For each frame size (the bundled 640x480 clip, and the same frames scaled to 1080p) it runs the
daemon's per-frame work - quality gate, cell finder, tracker, red-cell ruler (the daemon's
default; the clip's dense fields never fix its figure, so every kept frame is measured), crops +
classifier, session count, crop JPEGs and one SQLite commit (WAL, synchronous=FULL) - over the
decoded frames, looping the
clip `--repeats` times, and reports frames/s and milliseconds per stage. The same run repeats it
with torch eager in place of the runtime (what a user would write with the training checkpoint),
so ratios come from one run on one machine, once more with the live view publishing (the
current frame as JPEG and the figures, 4 times per second), and with each crop's test-time
views averaged: its mirror images (`[capture] tta = "mirror"`, 4 runs) and eight stain hues
(`"stain"`, 8 runs, the daemon's default for a model trained under varied stain hues, as
cbam_cnn_int8 is); the other rows run one view, so that runtime and
torch compare like for like. Needs edgehemo[train] for torch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgehemo.device.cellfinder import TUNED_RED_CELL_PX, CellFinder, CellFinderSettings
from edgehemo.device.classifier import Classifier
from edgehemo.device.config import CaptureConfig
from edgehemo.device.daemon import CaptureDaemon, CaptureSummary
from edgehemo.device.live import LivePublisher
from edgehemo.device.pipeline import FramePipeline
from edgehemo.device.quality import QualityGate
from edgehemo.device.session import SlideSession
from edgehemo.device.sources import Frame
from edgehemo.device.tracking import CellTracker
from edgehemo.ruler import RedCellRuler
from edgehemo.store import DiskGuard, FrameRecord, ResultStore, SessionInfo

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "edge" / "samples" / "clip" / "bccd_demo.avi"
STAGES = ("quality", "find", "track", "classify", "count", "store")


def decode(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def to_1080p(frame: np.ndarray) -> np.ndarray:
    """Scale 2.25x (480 -> 1080 lines) and extend the sides to 1920 columns."""
    scaled = cv2.resize(frame, (1440, 1080), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(scaled, 0, 0, 240, 240, cv2.BORDER_REPLICATE)


def finder_for(height: int) -> CellFinderSettings:
    """Cell sizes scale with the magnification: here 2.25x for the 1080p frames."""
    if height <= 480:
        return CellFinderSettings()
    scale = height / 480
    return CellFinderSettings(downscale=8, close_px=round(9 * scale / 2),
                              min_area_px=round(3000 * scale**2),
                              tuned_red_cell_px=TUNED_RED_CELL_PX * scale)


def torch_predict(model_name: str):
    import torch

    from edgehemo.models import resolve_weights
    from edgehemo.preprocess import normalize
    from edgehemo.train.evaluate import load_model

    torch.set_num_threads(1)
    weights = resolve_weights(model_name)
    model = load_model(weights.checkpoint, weights.card)
    spec = weights.card.preprocessing

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.from_numpy(normalize(images, spec)))
            return torch.softmax(logits, dim=1).numpy()

    return predict


def run(frames: list[np.ndarray], predict, classifier: Classifier, repeats: int,
        state_dir: Path, live: bool = False) -> dict[str, float]:
    manifest = classifier.manifest
    session = SlideSession(manifest.classes)
    finder_settings = finder_for(frames[0].shape[0])
    pipeline = FramePipeline(predict, manifest.classes, manifest.preprocessing.input_size,
                             session, quality=QualityGate(),
                             finder=CellFinder(finder_settings), tracker=CellTracker(),
                             ruler=RedCellRuler(finder_settings.red_cells_to_measure),
                             crop_fraction=manifest.preprocessing.crop_fraction)
    config = CaptureConfig()
    daemon = CaptureDaemon(config, state_dir)
    guard = DiskGuard(state_dir, reserve_mb=0)
    store = ResultStore.in_dir(state_dir)
    session_id, uid = store.start_session(SessionInfo(
        source="bench", model=manifest.name, model_sha256=manifest.sha256, backend="cpu",
        classes=manifest.classes))
    summary = CaptureSummary(uid, session_id, state_dir)
    totals = dict.fromkeys(STAGES, 0.0)
    fields = {"model": manifest.name, "model_sha256": manifest.sha256, "backend": "cpu"}
    publisher = LivePublisher(state_dir, config.quality) if live else None
    totals["live"] = 0.0
    count = 0
    start = time.perf_counter()
    for _ in range(repeats):
        for image in frames:
            frame = Frame(image, time.time(), "bench")
            outcome = pipeline.process(image)
            summary.frames += 1
            t0 = time.perf_counter()
            cells = daemon.save_cells(frame, outcome, state_dir / "crops" / uid, guard, summary,
                                       manifest.preprocessing.crop_fraction)
            store.record_frame(session_id, FrameRecord(seq=summary.frames, captured_at=0.0,
                                                       kept=outcome.quality.ok,
                                                       reason=outcome.quality.reason,
                                                       cells_new=len(cells)), cells, **fields)
            totals["store"] += (time.perf_counter() - t0) * 1000
            if publisher is not None:
                t1 = time.perf_counter()
                publisher.maybe_publish(image, outcome, session, 0.0)
                totals["live"] += (time.perf_counter() - t1) * 1000
            for stage, ms in outcome.stage_ms.items():
                totals[stage] += ms
            count += 1
    seconds = time.perf_counter() - start
    store.close()
    out = {stage: totals[stage] / count for stage in (*STAGES, "live")}
    out["fps"] = count / seconds
    out["ms"] = 1000 * seconds / count
    out["cells"] = session.total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cbam_cnn_int8")
    parser.add_argument("--torch-model", default="cbam_cnn")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    classifier = Classifier.load(args.model, backend="cpu", settings={"threads": 1})
    runtimes = {f"{args.model} (onnxruntime), one view": classifier.predict_framed}
    try:
        runtimes[f"{args.torch_model} (torch eager)"] = torch_predict(args.torch_model)
    except ImportError:
        print("torch not installed: the torch eager row is skipped")
    clip = decode(CLIP)
    sizes = {"640x480": clip, "1920x1080": [to_1080p(f) for f in clip]}
    header = ("| frames | classifier | frames/s | ms/frame | " +
              " | ".join(f"{s} ms" for s in (*STAGES, "live")) + " | cells |")
    lines = [header, "|" + "---|" * (len(STAGES) + 6)]
    results = {}
    runs = [(name, predict, False) for name, predict in runtimes.items()]
    runs.append((f"{args.model} (onnxruntime), one view + live view", classifier.predict_framed,
                 True))
    views = [("mirror", "mirror images averaged (tta = mirror)")]
    if classifier.manifest.preprocessing.test_views == "stain":  # the model's default (auto)
        views.append(("stain", "eight stain hues averaged (tta = stain, the default)"))
    for mode, label in views:
        averaged = Classifier.load(args.model, backend="cpu", settings={"threads": 1}, tta=mode)
        runs.append((f"{args.model} (onnxruntime), {label}", averaged.predict_framed, False))
    for size, frames in sizes.items():
        for name, predict, live in runs:
            with tempfile.TemporaryDirectory() as state:
                r = run(frames, predict, classifier, args.repeats, Path(state), live)
            results[(size, name)] = r
            lines.append(f"| {size} | {name} | {r['fps']:.1f} | {r['ms']:.2f} | " +
                         " | ".join(f"{r[s]:.2f}" for s in (*STAGES, "live")) +
                         f" | {r['cells']} |")
    if len(runtimes) == 2:
        names = list(runtimes)
        for size in sizes:
            ratio = results[(size, names[0])]["fps"] / results[(size, names[1])]["fps"]
            lines.append(f"\n{size}: runtime pipeline {ratio:.2f}x the frames/s of torch eager")
    text = "\n".join(lines)
    print(f"{len(clip)} clip frames x {args.repeats} repeats, 1 thread; per-stage ms are "
          "averages over all frames (rejected frames stop after the quality gate)\n")
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
