"""BatchNorm re-estimation from a site's unlabelled images (`edgehemo adapt`)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

from edgehemo.datasets import image_files
from edgehemo.models import resolve_weights
from edgehemo.preprocess import crop_and_resize, load_image
from edgehemo.train.adapt import reestimate_batchnorm
from edgehemo.train.evaluate import load_model

CLI = [sys.executable, "-m", "edgehemo.cli"]


def test_statistics_become_the_site_images_and_weights_stay(samples_dir):
    weights = resolve_weights("cbam_cnn")
    model = load_model(weights.checkpoint, weights.card)
    spec = weights.card.preprocessing
    framed = np.stack([crop_and_resize(load_image(p), spec) for p in image_files(samples_dir)])
    framed = framed[..., ::-1].copy()  # a camera that swaps red and blue
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    first_bn.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].detach()))
    assert reestimate_batchnorm(model, framed, spec, batch_size=len(framed)) > 0
    features = seen[0]
    expected = features.mean(dim=(0, 2, 3))
    assert torch.allclose(first_bn.running_mean, expected, atol=1e-5)
    assert not torch.allclose(first_bn.running_mean, before[next(
        k for k in before if k.endswith("running_mean"))])
    for key, value in model.state_dict().items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(value, before[key]), key
    assert not model.training


def test_adapt_command_writes_a_checkpoint_that_evaluates(samples_dir, tmp_path):
    site = tmp_path / "site crops"
    shutil.copytree(samples_dir, site)
    (site / "broken.jpg").write_bytes(b"not a jpeg")
    (site / "notes.txt").write_text("ignored")
    out = tmp_path / "adapted"
    result = subprocess.run([*CLI, "adapt", "cbam_cnn", "--data", str(site), "--out", str(out)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "from 32 images" in said and "1 unreadable skipped" in said
    card = json.loads((out / "best.json").read_text())
    assert card["name"] == "cbam_cnn_site" and card["metrics"] == {}
    assert card["data"]["batchnorm_adapted"]["images"] == 32
    report = subprocess.run([*CLI, "evaluate", "--model", str(out / "best.pt"), "--data",
                             str(samples_dir), "--json", "-"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["num_images"] == 32  # a folder without splits: all

    few = tmp_path / "few"
    few.mkdir()
    for path in image_files(samples_dir)[:5]:
        shutil.copy(path, few / path.name)
    result = subprocess.run([*CLI, "adapt", "cbam_cnn", "--data", str(few), "--out",
                             str(tmp_path / "x")], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 2 and "5 readable images; at least 32" in result.stderr
    assert "Traceback" not in result.stderr


def test_pseudo_labels_are_the_models_own_confident_answers(samples_dir, tmp_path, monkeypatch):
    from edgehemo.datasets import load_image_folder
    from edgehemo.train.data import predict_probabilities
    from edgehemo.train.selftrain import pseudo_labels

    site = tmp_path / "site"
    for copy in ("a", "b"):  # 64 unlabelled crops
        shutil.copytree(samples_dir, site / copy)
    record = pseudo_labels("cbam_cnn", site, tmp_path / "labels", confidence=0.0, classes="all")
    assert record["images"] == record["kept"] == 64 and record["views"] == "stain"
    assert sum(record["counts"].values()) == 64
    weights = resolve_weights("cbam_cnn")
    spec = weights.card.preprocessing
    written = load_image_folder(tmp_path / "labels", "train", spec)
    assert written.images.shape[1:] == (64, 64, 3)  # framed crops: read back unchanged
    model = load_model(weights.checkpoint, weights.card)
    answered = predict_probabilities(model, written, spec, tta="auto").argmax(1)
    assert [written.classes[i] for i in answered] == [written.classes[i] for i in written.labels]
    # the samples' own classes, bar the model's mistakes
    assert sum(abs(n - 8) for n in record["counts"].values()) <= 6

    # an answer under the threshold is not learned; a second run replaces the first's labels
    sure = pseudo_labels("cbam_cnn", site, tmp_path / "labels", confidence=0.9, classes="all")
    kept = load_image_folder(tmp_path / "labels", "train", spec)
    assert sure["kept"] == len(kept) < 64

    # a run that fails half-way (a full disk) leaves the earlier labels as they were
    import cv2
    import pytest

    from edgehemo.train import selftrain

    class FillsUp:
        writes = 0

        def imwrite(self, path, image):
            FillsUp.writes += 1
            return FillsUp.writes <= 5 and cv2.imwrite(path, image)

    monkeypatch.setattr(selftrain, "opencv", FillsUp)
    with pytest.raises(OSError, match="could not write a pseudo-labelled crop"):
        pseudo_labels("cbam_cnn", site, tmp_path / "labels", confidence=0.0, classes="all")
    assert len(load_image_folder(tmp_path / "labels", "train", spec)) == len(kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "site"]


def test_adapt_self_train_fine_tunes_on_the_confident_answers(samples_dir, tiny_npz, tmp_path,
                                                              clip_path):
    site = tmp_path / "site"
    for copy in ("a", "b"):
        shutil.copytree(samples_dir, site / copy)
    out = tmp_path / "selftrained"
    env = {**os.environ, "COLUMNS": "300"}
    result = subprocess.run([*CLI, "adapt", "cbam_cnn", "--method", "self-train", "--data",
                             str(site), "--replay", str(tiny_npz), "--out", str(out),
                             "--epochs", "1", "--threads", "1", "--classes", "all"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "best.json").read_text())
    record = card["data"]["self_trained"]
    assert record["images"] == 64 and record["kept"] >= 32 and record["confidence"] == 0.6
    assert card["preprocessing"]["test_views"] == "stain"  # the base model's views, kept
    assert card["training"]["epochs_run"] == 1 and card["name"] == "cbam_cnn_selftrained"
    assert f"fine-tuned on {record['kept']} of 64 images" in result.stdout + result.stderr
    report = subprocess.run([*CLI, "evaluate", "--model", str(out / "best.pt"), "--data",
                             str(samples_dir), "--json", "-"], capture_output=True, text=True)
    assert report.returncode == 0 and json.loads(report.stdout)["tta"] == "stain"
    # the adaptation travels: card -> manifest -> capture session -> results
    exported = subprocess.run([*CLI, "export", str(out / "best.pt"), "--formats", "onnx",
                               "--out", str(tmp_path / "exported")], capture_output=True,
                              text=True, env=env)
    assert exported.returncode == 0, exported.stderr
    manifest_path = next((tmp_path / "exported").glob("*.onnx.json"))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["adaptation"]["self_trained"]["kept"] == record["kept"]
    state = tmp_path / "state"
    captured = subprocess.run([*CLI, "capture", "--source", str(clip_path), "--state-dir",
                               str(state), "--set",
                               f"capture.model={manifest_path.with_suffix('')}"],
                              capture_output=True, text=True, env=env)
    assert captured.returncode == 0, captured.stderr
    listed = subprocess.run([*CLI, "results", "--state-dir", str(state)], capture_output=True,
                            text=True, env=env).stdout
    assert (f"site adaptation: self-trained on {record['kept']} of 64 unlabelled images of "
            "site (its answers of at least 60% confidence)") in listed

    for extra, reason in ((["--replay", str(tiny_npz), "--confidence", "0.999"],
                           "fewer than 32: too few to learn from"),
                          ([], "needs --replay DATA"),
                          (["--replay", str(tmp_path / "gone.npz")], "gone.npz: not found"),
                          (["--replay", str(tiny_npz), "--confidence", "60"],
                           "confidence 60.0: a probability, within 0..1"),
                          (["--replay", str(tiny_npz), "--method", "pseudo"],
                           "unknown --method 'pseudo'"),
                          (["--method", "batchnorm", "--replay", str(tiny_npz), "--seed", "3"],
                           "--replay, --seed: only for --method self-train")):
        args = [*CLI, "adapt", "cbam_cnn", "--data", str(site), "--out", str(tmp_path / "x")]
        method = [] if "--method" in extra else ["--method", "self-train"]
        refused = subprocess.run([*args, *method, *extra], capture_output=True, text=True,
                                 env=env)
        assert refused.returncode == 2 and reason in refused.stderr, refused.stderr
