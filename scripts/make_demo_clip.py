"""Build the bundled demo clip from BCCD full-field frames (MIT licence, see the clip's README).

Each chosen field is held for several frames with a slow drift of a few pixels (a still slide
under a live camera), and the stage moves between fields through blurred frames (which the
quality gate rejects). Deterministic: the same inputs give the same clip.

    python scripts/make_demo_clip.py --bccd ../shared/data/bccd
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

# BCCD frames with one or two annotated white cells each
FIELDS = ("BloodImage_00010", "BloodImage_00031", "BloodImage_00058", "BloodImage_00093",
          "BloodImage_00112", "BloodImage_00145")
HOLD = 6
DRIFT_PX = 1.5
MOTION_FRAMES = 2


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", type=Path, default=Path("../shared/data/bccd"))
    parser.add_argument("--out", type=Path, default=Path("edge/samples/clip/bccd_demo.avi"))
    parser.add_argument("--quality", type=int, default=75)
    args = parser.parse_args()
    frames = []
    for number, field in enumerate(FIELDS):
        image = cv2.imread(str(args.bccd / "JPEGImages" / f"{field}.jpg"))
        if image is None:
            raise SystemExit(f"cannot read {field} under {args.bccd}")
        if number:
            previous = frames[-1]
            for step in range(MOTION_FRAMES):
                mix = cv2.addWeighted(previous, 0.5, image, 0.5, 0)
                frames.append(cv2.GaussianBlur(shifted(mix, 40 * (step + 1), 0), (0, 0), 4))
        frames.extend(shifted(image, DRIFT_PX * t, DRIFT_PX * t / 2) for t in range(HOLD))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                             frames[0].shape[1::-1])
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, args.quality)
    for frame in frames:
        writer.write(frame)
    writer.release()
    print(f"{args.out}: {len(frames)} frames, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
