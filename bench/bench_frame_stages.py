"""Where the quality gate's and the tracker's defaults come from, on real frames.

    python bench/bench_frame_stages.py [--bccd ../shared/data/bccd]

Quality: focus (variance of the Laplacian at 320 px wide), clipped fraction and colour cast of
the BCCD frames as they are and blurred (Gaussian sigma 1.7). Tracker: the phase-correlation peak
between frames of the bundled clip: the same field drifting, the same field panned, different
fields. Uses the gate's and the tracker's own code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edgehemo.device.quality import QualityGate
from edgehemo.device.tracking import CellTracker

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "edge" / "samples" / "clip" / "bccd_demo.avi"
BCCD = REPO.parent / "shared" / "data" / "bccd"


def percentiles(values: list[float]) -> str:
    p = np.percentile(values, [0, 5, 50, 95, 100])
    return " / ".join(f"{v:.3g}" for v in p)


def peak(a: np.ndarray, b: np.ndarray) -> float:
    """The tracker's own phase-correlation peak between two frames."""
    tracker = CellTracker()
    tracker.update(a, [])
    return tracker.update(b, []).response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", type=Path, default=BCCD)
    args = parser.parse_args()
    gate = QualityGate()
    if args.bccd.is_dir():
        frames = [cv2.imread(str(p)) for p in sorted((args.bccd / "JPEGImages").glob("*.jpg"))]
        sharp = [gate.assess(f) for f in frames]
        blurred = [gate.assess(cv2.GaussianBlur(f, (0, 0), 1.7)) for f in frames]
        print(f"BCCD frames: {len(frames)} (percentiles min / 5 / 50 / 95 / max)")
        print(f"  focus, as they are:      {percentiles([q.focus for q in sharp])}")
        print(f"  focus, blurred sigma 1.7: {percentiles([q.focus for q in blurred])}")
        print(f"  clipped fraction:        {percentiles([q.clipped for q in sharp])}")
        print(f"  colour cast:             {percentiles([q.cast for q in sharp])}")
        print(f"  rejected by the defaults: {sum(not q.ok for q in sharp)} as they are, "
              f"{sum(not q.ok for q in blurred)} blurred")
    capture = cv2.VideoCapture(str(CLIP))
    clip = []
    while (frame := capture.read())[0]:
        clip.append(frame[1])
    tracker = CellTracker()
    fields = [0, 8, 16, 24, 32, 40]  # first frame of each field (see edge/samples/clip/README.md)
    drift = [peak(clip[f], clip[f + 1]) for f in fields]
    pans = [peak(clip[0], cv2.warpAffine(clip[0], np.float32([[1, 0, d], [0, 1, d / 2]]),
                                                  (640, 480), borderMode=cv2.BORDER_REPLICATE))
            for d in (20, 40, 80)]
    different = [peak(clip[a], clip[b]) for a in fields for b in fields if a < b]
    print("phase-correlation peak on the bundled clip:")
    print(f"  same field, drifting 1.5 px: {min(drift):.2f}-{max(drift):.2f}")
    print(f"  same field, panned 20/40/80 px: {', '.join(f'{p:.2f}' for p in pans)}")
    print(f"  different fields: {min(different):.2f}-{max(different):.2f} "
          f"(reset below {tracker.settings.min_response})")


if __name__ == "__main__":
    main()
