"""Shared fixtures: the sample images the repo ships, a tiny npz built from them, shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgehemo.datasets import load_image_folder
from edgehemo.preprocess import PreprocessSpec

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "edge" / "samples" / "pbc"
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_NPZ = SHARED_DATA / "pbc_bloodmnist_like_64.npz"

requires_shared_npz = pytest.mark.skipif(
    not SHARED_NPZ.is_file(),
    reason=f"the full PBC 64x64 data ({SHARED_NPZ}) is not on this machine",
)
SHARED_JPEG = SHARED_DATA / "pbc_jpeg_subset"
requires_shared_jpeg = pytest.mark.skipif(
    not (SHARED_JPEG / "test").is_dir(),
    reason=f"the PBC 224x224 ImageFolder subset ({SHARED_JPEG}) is not on this machine",
)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def sample_set():
    """The 32 bundled PBC images, framed at 64x64 by the shared preprocessing."""
    return load_image_folder(SAMPLES, "test", PreprocessSpec())


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory, sample_set) -> Path:
    """A MedMNIST-layout npz from the bundled samples: every split holds all 32 images."""
    path = tmp_path_factory.mktemp("npz") / "tiny.npz"
    labels = sample_set.labels.reshape(-1, 1).astype(np.uint8)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = sample_set.images
        arrays[f"{split}_labels"] = labels
    np.savez(path, class_names=np.array(sample_set.classes), **arrays)
    return path


CLIP = REPO / "edge" / "samples" / "clip" / "bccd_demo.avi"
SHARED_BCCD = SHARED_DATA / "bccd"

requires_shared_bccd = pytest.mark.skipif(
    not (SHARED_BCCD / "boxes.csv").is_file(),
    reason=f"the BCCD full-field frames ({SHARED_BCCD}) are not on this machine",
)

# The annotated white-cell boxes (BCCD, MIT) of the six fields in the bundled clip, in clip order;
# each field is held for 6 frames after 2 motion frames (none before the first).
CLIP_FIELDS = (
    [(23, 229, 204, 421), (239, 253, 510, 470)],
    [(127, 143, 270, 273), (287, 364, 437, 480)],
    [(211, 4, 338, 132)],
    [(9, 1, 137, 103)],
    [(1, 264, 161, 414)],
    [(300, 353, 459, 480)],
)


@pytest.fixture(scope="session")
def clip_path() -> Path:
    return CLIP


@pytest.fixture(scope="session")
def clip_frames() -> list[np.ndarray]:
    """The bundled clip decoded (BGR frames, 640x480)."""
    import cv2

    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def field_frame(clip_frames, field: int) -> np.ndarray:
    """The first (undrifted) frame of a field of the clip."""
    return clip_frames[0 if field == 0 else field * 8]
