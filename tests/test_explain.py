"""Explain: Grad-CAM and the attention maps of the shipped CBAM-CNN, and the PNG the CLI writes."""

import subprocess
import sys

import numpy as np

from edgehemo.models import resolve_weights
from edgehemo.preprocess import load_image
from edgehemo.train.evaluate import load_model
from edgehemo.train.explain import explain_image


def test_gradcam_and_every_cbam_gate_are_returned(samples_dir):
    weights = resolve_weights("cbam_cnn")
    model = load_model(weights.checkpoint, weights.card)
    image = load_image(sorted((samples_dir / "eosinophil").glob("*.jpg"))[0])
    explanation = explain_image(model, weights.card, image)
    assert explanation.label == "eosinophil"
    assert explanation.gradcam.shape == (64, 64)
    assert explanation.gradcam.min() >= 0 and explanation.gradcam.max() == 1.0
    assert len(explanation.spatial) == 4 and len(explanation.channel) == 4
    assert [len(c) for c in explanation.channel] == [32, 64, 128, 256]
    before, after = explanation.before_after
    assert before.shape == after.shape == (64, 64) and not np.allclose(before, after)
    assert explanation.gradcam.std() > 0.05  # a map, not a constant


def test_explain_command_writes_one_png_per_image(samples_dir, tmp_path):
    images = sorted((samples_dir / "neutrophil").glob("*.jpg"))[:2]
    result = subprocess.run([sys.executable, "-m", "edgehemo.cli", "explain", "cbam_cnn",
                             *map(str, images), "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    pngs = sorted(tmp_path.glob("*_explain.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
