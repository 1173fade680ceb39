"""The CLI end to end on tiny data, as a user runs it (subprocess, real entry point)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EDGEHEMO = [sys.executable, "-m", "edgehemo.cli"]


def run(*args, check=True):
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([*EDGEHEMO, *map(str, args)], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_help_lists_the_commands():
    out = run("--help").stdout
    for command in ("train", "evaluate", "models"):
        assert command in out
    # help reflows to the terminal (a docstring's line break is no break on screen)
    assert "writes best.pt + best.json (model card)" in out
    assert "OUT/<class>/*.jpg" in run("export-reviewed", "--help").stdout


def test_train_then_evaluate_then_models(tiny_npz, tmp_path):
    out = tmp_path / "run"
    run("train", "se_cnn", "--data", tiny_npz, "--out", out, "--epochs", "2", "--batch-size",
        "16", "--ema", "0", "--threads", "1")
    assert (out / "best.pt").is_file() and (out / "best.json").is_file()

    report_path = tmp_path / "metrics.json"
    result = run("evaluate", "--model", out / "best.pt", "--data", tiny_npz, "--split", "test",
                 "--json", report_path, "--confusion-png", tmp_path / "cm.png", "--write-card")
    report = json.loads(report_path.read_text())
    assert 0.0 <= report["accuracy"] <= 1.0 and report["num_images"] == 32
    assert report["tta"] == "none"  # a card records the model's own figures
    assert set(report["per_class"]["basophil"]) >= {"precision", "recall", "specificity"}
    assert report["num_params"] == 465_792
    assert f"accuracy {report['accuracy']:.4f}" in result.stdout
    assert (tmp_path / "cm.png").stat().st_size > 1000
    card = json.loads((out / "best.json").read_text())
    assert card["metrics"]["test"]["accuracy"] == pytest.approx(report["accuracy"], abs=1e-5)

    listing = json.loads(run("models", "--json").stdout)
    names = {row["name"] for row in listing["architectures"]}
    assert {"cbam_cnn", "hemonet", "se_vgg15"} <= names
    views = {(row["name"], row["format"]): row["views"] for row in listing["exported"]}
    assert views[("cbam_cnn_int8", "tflite")] == "stain" and views[("se_cnn_int8", "onnx")] == (
        "mirror")
    assert {row["name"]: row["views"] for row in listing["weights"]}["hemonet"] == "mirror"


def test_evaluate_on_an_image_folder(tmp_path, tiny_npz, samples_dir):
    out = tmp_path / "run"
    run("train", "cnn", "--data", tiny_npz, "--out", out, "--epochs", "1", "--batch-size", "16",
        "--ema", "0", "--threads", "1")
    report = json.loads(run("evaluate", "--model", out / "best.pt", "--data", samples_dir,
                            "--json", "-").stdout)
    assert report["num_images"] == 32 and report["classes"][7] == "platelet"
    assert report["whole_folder"] is True  # no split folders: every image, whatever --split
    import shutil

    shutil.copytree(samples_dir, tmp_path / "split" / "test")
    printed = run("evaluate", "--model", out / "best.pt", "--data", tmp_path / "split").stdout
    assert f"on {tmp_path / 'split'} [test]" in printed


def test_evaluate_reads_a_labs_own_class_folder_names(samples_dir, tmp_path):
    import shutil

    for name in ("immature_granulocyte", "neutrophil", "basophil"):
        shutil.copytree(samples_dir / name, tmp_path / "site" / {
            "immature_granulocyte": "IG", "neutrophil": "Neutrophils"}.get(name, name))
        shutil.copytree(samples_dir / name, tmp_path / "ours" / name)
    theirs = json.loads(run("evaluate", "--model", "cbam_cnn_int8", "--data",
                            tmp_path / "site", "--json", "-").stdout)
    ours = json.loads(run("evaluate", "--model", "cbam_cnn_int8", "--data", tmp_path / "ours",
                          "--json", "-").stdout)
    assert theirs["class_folders"] == {"IG": "immature_granulocyte", "Neutrophils": "neutrophil"}
    assert ours["class_folders"] is None
    assert theirs["confusion_matrix"] == ours["confusion_matrix"]
    printed = run("evaluate", "--model", "cbam_cnn_int8", "--data", tmp_path / "site")
    assert "classes read as: IG -> immature_granulocyte, Neutrophils -> neutrophil" in (
        printed.stderr)
    assert theirs["whole_folder"] is True
    assert "[every image: no train/val/test folders]" in printed.stdout


def test_user_errors_are_one_clear_line(tmp_path, tiny_npz):
    result = run("train", "cbam-cnn", "--data", tiny_npz, "--out", tmp_path, check=False)
    assert result.returncode == 2 and "Did you mean: cbam_cnn" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("evaluate", "--model", "no_such_model", "--data", tiny_npz, check=False)
    assert result.returncode == 2 and "no weights named 'no_such_model'" in result.stderr
    result = run("evaluate", "--model", "cbam_cnn", "--data", tmp_path / "x.npz", check=False)
    assert result.returncode == 2 and "no such file" in result.stderr
    # brackets in a message (an extra to install, a config section, a path) are printed as is
    result = run("classify", tmp_path / "cells[train].jpg", check=False)
    assert result.returncode == 2 and "cells[train].jpg" in result.stderr


def test_corrupt_checkpoint_is_refused(tmp_path, tiny_npz):
    out = tmp_path / "run"
    run("train", "cnn", "--data", tiny_npz, "--out", out, "--epochs", "1", "--batch-size", "16",
        "--ema", "0", "--threads", "1")
    checkpoint = Path(out / "best.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    result = run("evaluate", "--model", checkpoint, "--data", tiny_npz, check=False)
    assert result.returncode == 2 and "does not match its card" in result.stderr


def test_doctor_reports_runtimes_and_fixes(tmp_path):
    result = run("doctor", "--state-dir", tmp_path / "state")
    assert "OK      python" in result.stdout and "onnxruntime" in result.stdout
    assert "torch not loaded" in result.stdout
    # a missing optional runtime names the install command, markup intact
    if "missing litert" in result.stdout:
        assert "pip install 'edgehemo[tflite]'" in result.stdout


def test_classify_answers_with_the_models_views_as_capture_does(samples_dir):
    folder = samples_dir / "eosinophil"

    def probabilities(*options):
        rows = json.loads(run("classify", folder, "--json", "--top-k", "8", *options).stdout)
        return [{t["label"]: t["probability"] for t in row["topk"]} for row in rows]

    default, stain, one = probabilities(), probabilities("--views", "stain"), probabilities(
        "--views", "none")
    assert default == stain != one  # cbam_cnn_int8's manifest names the stain views
    said = run("classify", folder, "--model", "se_cnn_int8").stderr
    assert "se_cnn_int8 on cpu, mirror images averaged (4 runs)" in said
    refused = run("classify", folder, "--model", "se_cnn_int8", "--stain-tta", check=False)
    assert refused.returncode == 2 and "not trained under varied stain hues" in refused.stderr
    typo = run("classify", folder, "--views", "stains", check=False)
    assert typo.returncode == 2 and "choose one of auto, none, mirror, stain" in typo.stderr


def test_classify_can_be_told_the_crops_are_white_cells(samples_dir):
    import numpy as np

    from edgehemo.classes import answer_classes, restricted

    classes = ("basophil", "erythroblast", "lymphocyte", "platelet")
    allowed = answer_classes("white_cells", classes)
    assert allowed == (0, 2)
    assert answer_classes("platelet, lymphocyte", classes) == (2, 3)
    assert answer_classes("nucleated_cells", classes) == (0, 1, 2)
    assert answer_classes("all", classes) == (0, 1, 2, 3)
    probabilities = np.array([[0.1, 0.2, 0.1, 0.6], [0.0, 1.0, 0.0, 0.0]])
    assert np.allclose(restricted(probabilities, allowed), [[0.5, 0, 0.5, 0], [0.5, 0, 0.5, 0]])
    for bad, reason in (("blast,lymphocyte", "unknown class"), ("lymphocyte", "at least two")):
        with pytest.raises(ValueError, match=reason):
            answer_classes(bad, classes)

    platelets = samples_dir / "platelet"
    plain = json.loads(run("classify", platelets, "--json").stdout)
    assert [row["label"] for row in plain] == ["platelet"] * 4
    told = json.loads(run("classify", platelets, "--json", "--classes", "white_cells",
                          "--top-k", "8").stdout)
    for row in told:
        assert row["label"] not in ("platelet", "erythroblast") and len(row["topk"]) == 6
        assert sum(t["probability"] for t in row["topk"]) == pytest.approx(1, abs=1e-4)
    result = run("classify", platelets, "--classes", "blast,neutrophil", check=False)
    assert result.returncode == 2 and "unknown class(es) blast" in result.stderr


@pytest.mark.parametrize("model", ["cbam_cnn_int8", "cbam_cnn"])
def test_evaluate_can_restrict_the_answers_too(model, samples_dir, tmp_path):
    import shutil

    data = tmp_path / "site"  # platelets filed as lymphocytes: no platelet answer is allowed
    shutil.copytree(samples_dir / "platelet", data / "test" / "lymphocyte")
    plain = json.loads(run("evaluate", "--model", model, "--data", data, "--json", "-",
                           "--views", "none").stdout)
    told = json.loads(run("evaluate", "--model", model, "--data", data, "--json", "-",
                          "--classes", "white_cells", "--views", "none").stdout)
    platelet = plain["classes"].index("platelet")
    assert plain["answer_classes"] is None
    assert sum(row[platelet] for row in plain["confusion_matrix"]) == 4
    assert "platelet" not in told["answer_classes"]
    assert sum(row[platelet] for row in told["confusion_matrix"]) == 0
    mirrored = json.loads(run("evaluate", "--model", model, "--data", data, "--json", "-",
                              "--tta").stdout)
    stained = json.loads(run("evaluate", "--model", model, "--data", data, "--json", "-",
                             "--stain-tta").stdout)
    assert (plain["tta"], mirrored["tta"], stained["tta"]) == ("none", "mirror", "stain")
    default = json.loads(run("evaluate", "--model", model, "--data", data, "--json", "-").stdout)
    # as classify and capture answer: the model's own views (stain, for the shipped cbam_cnn)
    assert default["tta"] == "stain" and default["confusion_matrix"] == stained[
        "confusion_matrix"]
    both = run("evaluate", "--model", model, "--data", data, "--tta", "--stain-tta", check=False)
    assert both.returncode == 2 and "--tta and --stain-tta: give one" in both.stderr
    both = run("evaluate", "--model", model, "--data", data, "--views", "none", "--tta",
               check=False)
    assert both.returncode == 2 and "--views and --tta: give one" in both.stderr
    if model == "cbam_cnn":
        for option in ("--classes=white_cells", "--tta", "--stain-tta"):
            refused = run("evaluate", "--model", model, "--data", data, option, "--write-card",
                          check=False)
            assert refused.returncode == 2 and "not recorded in a card" in refused.stderr


def test_torch_test_time_augmentation_averages_the_mirror_images(samples_dir):
    import numpy as np

    from edgehemo.datasets import ImageSet, load_image_folder
    from edgehemo.models import resolve_weights
    from edgehemo.train.data import predict_probabilities
    from edgehemo.train.evaluate import load_model

    weights = resolve_weights("cbam_cnn")
    model, spec = load_model(weights.checkpoint, weights.card), weights.card.preprocessing
    data = load_image_folder(samples_dir, "test", spec)
    views = [data.images, data.images[:, :, ::-1], data.images[:, ::-1],
             data.images[:, ::-1, ::-1]]
    expected = np.mean([predict_probabilities(model, ImageSet(
        np.ascontiguousarray(view), data.labels, data.classes, data.files, data.source), spec)
        for view in views], axis=0)
    averaged = predict_probabilities(model, data, spec, tta=True)
    assert np.allclose(averaged, expected, atol=1e-5)
    assert np.abs(averaged - predict_probabilities(model, data, spec)).max() > 1e-3
