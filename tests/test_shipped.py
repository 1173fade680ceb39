"""The weights and artifacts the package ships: integrity, and the accuracy their cards claim."""

import pytest
from conftest import SHARED_NPZ, requires_shared_npz

from edgehemo.datasets import load_dataset
from edgehemo.device.classifier import Classifier
from edgehemo.device.evaluate import evaluate_artifact, evaluate_classifier
from edgehemo.manifest import verify_artifact
from edgehemo.models import list_artifacts, list_shipped
from edgehemo.train.evaluate import evaluate_checkpoint

SHIPPED_WEIGHTS = ("cbam_cnn", "se_cnn", "sa_cnn")
SHIPPED_ARTIFACTS = ("cbam_cnn_fp32", "cbam_cnn_int8", "se_cnn_fp32", "se_cnn_int8")


def test_the_promised_weights_and_artifacts_are_shipped():
    assert set(SHIPPED_WEIGHTS) <= {w.name for w in list_shipped()}
    assert set(SHIPPED_ARTIFACTS) <= {a.name for a in list_artifacts()}
    for weights in list_shipped():
        assert weights.card.num_params <= 600_000
        assert weights.card.metrics["test"]["accuracy"] > 0.95
    for artifact in list_artifacts():
        verify_artifact(artifact.path, artifact.manifest)


@pytest.mark.parametrize("name", SHIPPED_ARTIFACTS)
def test_shipped_artifacts_classify_the_bundled_cells(name, samples_dir):
    classifier = Classifier.load(name)
    data = load_dataset(samples_dir, "test", classifier.manifest.preprocessing)
    report, _ = evaluate_classifier(classifier, data)
    assert report["accuracy"] >= 0.9  # 32 cells of the held-out test split, 4 per class


@requires_shared_npz
@pytest.mark.parametrize("name", ["cbam_cnn_int8", "cbam_cnn_fp32"])
def test_device_path_reproduces_the_manifest_accuracy(name):
    report = evaluate_artifact(name, SHARED_NPZ, "test", threads=2)
    recorded = Classifier.load(name).manifest.metrics["test"]["accuracy"]
    assert report["accuracy"] == pytest.approx(recorded, abs=2e-4)


@requires_shared_npz
def test_int8_keeps_the_fp32_accuracy():
    fp32 = Classifier.load("cbam_cnn_fp32").manifest.metrics["test"]["accuracy"]
    int8 = Classifier.load("cbam_cnn_int8").manifest
    assert int8.metrics["test"]["accuracy"] >= fp32 - 0.002
    assert int8.metrics["top1_agreement_with_fp32"] >= 0.998


@requires_shared_npz
def test_shipped_checkpoint_reproduces_its_card():
    weights = {w.name: w for w in list_shipped()}["cbam_cnn"]
    report = evaluate_checkpoint("cbam_cnn", SHARED_NPZ, "test")
    assert report["accuracy"] == pytest.approx(weights.card.metrics["test"]["accuracy"],
                                               abs=1e-4)
