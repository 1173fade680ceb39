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
