"""One microscope's magnification measured over many of its images (edgehemo.sitescale), and how
classify and the ImageFolder loader use it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgehemo.cli import app
from edgehemo.datasets import image_files, load_image_folder
from edgehemo.device.classifier import Classifier
from edgehemo.device.classify import classify_paths
from edgehemo.preprocess import PreprocessSpec, crop_and_resize, load_image
from edgehemo.ruler import PBC_RED_CELL_DIAMETER
from edgehemo.sitescale import MIN_POOLED_NUCLEI, site_scale


@pytest.fixture(scope="module")
def fields(samples_dir: Path) -> list[np.ndarray]:
    """The bundled PBC fields (RGB, 360x363, red cells ~72.5 px)."""
    return [load_image(path) for path in image_files(samples_dir)]


def centre(image: np.ndarray, side: int) -> np.ndarray:
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return np.ascontiguousarray(image[top : top + side, left : left + side])


def zoomed(image: np.ndarray, factor: float) -> np.ndarray:
    return cv2.resize(image, None, fx=factor, fy=factor,
                      interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def test_pooled_red_cells_give_the_fields_magnification(fields):
    scale = site_scale(fields)
    assert scale.source == "red cells" and scale.images == len(fields) and scale.measured >= 20
    assert scale.red_cell == pytest.approx(PBC_RED_CELL_DIAMETER, rel=0.05)
    smaller = site_scale([zoomed(image, 0.7) for image in fields])
    assert smaller.source == "red cells"
    assert smaller.red_cell / scale.red_cell == pytest.approx(0.7, rel=0.03)


def test_tight_crops_fall_back_to_the_nuclei_which_follow_the_magnification(fields):
    tight = site_scale([centre(image, 144) for image in fields])
    assert tight.source == "nuclei" and tight.measured >= MIN_POOLED_NUCLEI
    # The samples hold platelets and nucleated red cells, whose small nuclei pull the white-cell
    # reference down; still the right magnification within a fifth.
    assert tight.red_cell == pytest.approx(PBC_RED_CELL_DIAMETER, rel=0.2)
    larger = site_scale([centre(zoomed(image, 1.5), 216) for image in fields])
    assert larger.source == "nuclei"
    assert larger.red_cell / tight.red_cell == pytest.approx(1.5, rel=0.05)


def test_too_few_images_leave_each_image_on_its_own(fields):
    scale = site_scale([centre(image, 144) for image in fields[:10]])
    assert scale.red_cell is None and scale.source == "" and scale.images == 10
    assert "each image framed on its own" in scale.describe()
    assert site_scale([]).images == 0


@pytest.fixture(scope="module")
def tight_folder(tmp_path_factory, samples_dir: Path) -> Path:
    """The bundled samples as tight crops at 1.5x the magnification, in class folders."""
    root = tmp_path_factory.mktemp("tight")
    for path in image_files(samples_dir):
        crop = centre(zoomed(load_image(path), 1.5), 216)
        target = root / path.parent.name / f"{path.stem}.png"
        target.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(target), crop[..., ::-1])
    return root


def test_classify_frames_a_folder_at_its_measured_magnification(tight_folder):
    classifier = Classifier.load("cbam_cnn_int8")
    pooled = classify_paths(classifier, [tight_folder])
    assert pooled.scale is not None and pooled.scale.source == "nuclei"
    given = classify_paths(classifier, [tight_folder], red_cell=pooled.scale.red_cell)
    each = classify_paths(classifier, [tight_folder], one_microscope=False)
    assert given.scale is None and each.scale is None
    confidences = [p.confidence for p in pooled.predictions]
    assert confidences == [p.confidence for p in given.predictions]
    assert confidences != [p.confidence for p in each.predictions]


def test_classify_does_not_measure_crops_already_at_the_input_size(tmp_path, sample_set):
    for index, image in enumerate(sample_set.images):
        cv2.imwrite(str(tmp_path / f"{index:02d}.png"), image[..., ::-1])
    result = classify_paths(Classifier.load("cbam_cnn_int8"), [tmp_path])
    assert result.scale is not None and result.scale.images == 0
    assert result.scale.red_cell is None and len(result.predictions) == len(sample_set)


def test_classify_cli_says_the_magnification_and_each_image_skips_it(tight_folder):
    runner = CliRunner()
    pooled = runner.invoke(app, ["classify", str(tight_folder), "--json"])
    assert pooled.exit_code == 0, pooled.output
    said = " ".join(pooled.stderr.split())  # the console wraps lines
    assert "magnification over 32 images" in said and "from 32 white-cell nuclei" in said
    each = runner.invoke(app, ["classify", str(tight_folder), "--json", "--each-image"])
    assert each.exit_code == 0, each.output
    assert "magnification" not in each.stderr


def test_image_folder_with_ruler_framing_uses_the_splits_magnification(tight_folder):
    spec = PreprocessSpec(framing="ruler")
    pooled = load_image_folder(tight_folder, "test", spec)
    each = load_image_folder(tight_folder, "test", spec, one_microscope=False)
    raw = [load_image(tight_folder / name) for name in pooled.files]
    red_cell = site_scale(raw).red_cell
    assert red_cell is not None
    expected = np.stack([crop_and_resize(image, spec, red_cell) for image in raw])
    assert np.array_equal(pooled.images, expected)
    assert np.array_equal(each.images, np.stack([crop_and_resize(im, spec) for im in raw]))
    assert not np.array_equal(pooled.images, each.images)


def test_evaluate_frames_a_folder_at_its_magnification_and_each_image_opts_out(tight_folder):
    """The bundled fields as tight crops at 1.5x: one scale over the folder brings back the
    cells' size that framing each crop by its own nucleus loses."""
    runner = CliRunner()
    accuracy = {}
    for model in ("cbam_cnn_int8", "cbam_cnn"):  # device runtime and torch
        for extra in ([], ["--each-image"]):
            result = runner.invoke(app, ["evaluate", "--model", model, "--data",
                                         str(tight_folder), "--json", "-", *extra])
            assert result.exit_code == 0, result.output
            report = json.loads(result.stdout)
            accuracy[model, bool(extra)] = report["accuracy"]
            if extra:
                assert report["magnification"] is None
            else:  # recorded with the metrics
                assert report["magnification"]["source"] == "nuclei"
                assert report["magnification"]["images"] == 32
    for model in ("cbam_cnn_int8", "cbam_cnn"):
        assert accuracy[model, False] >= 0.9
        assert accuracy[model, True] < accuracy[model, False] - 0.1
