"""Export to ONNX fp32/int8 and run the artifacts through the device runtime (no torch)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgehemo.datasets import load_image_folder
from edgehemo.device.backends import BackendError
from edgehemo.device.classifier import Classifier
from edgehemo.errors import CheckpointError, DatasetError, ModelNotFoundError
from edgehemo.export.pipeline import export_model, parse_formats
from edgehemo.manifest import manifest_path_for, read_manifest
from edgehemo.preprocess import load_image
from edgehemo.train.loop import TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    config = TrainConfig.from_recipe("cbam_cnn", tiny_npz, out, epochs=4, batch_size=16,
                                     ema=0.0, augment="none", threads=1)
    return train(config).checkpoint


@pytest.fixture(scope="module")
def exported(checkpoint, tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    rows = export_model(checkpoint, formats=["onnx", "onnx-int8"], calibration=tiny_npz,
                        calibration_count=32, eval_data=tiny_npz, out=out)
    return out, rows


def test_export_writes_verified_artifacts_with_manifests(exported):
    out, rows = exported
    assert [row.status for row in rows] == ["passed", "passed"]
    fp32 = read_manifest(out / "cbam_cnn_fp32.onnx.json")
    int8 = read_manifest(out / "cbam_cnn_int8.onnx.json")
    assert fp32.metrics["max_abs_logit_diff_vs_torch"] < 1e-4
    assert fp32.classes[0] == "basophil" and fp32.input.shape == ["batch", 3, 64, 64]
    assert int8.calibration["count"] == 32 and int8.calibration["split"] == "train"
    assert int8.calibration["bias_correction"] == "empirical, 13 layers"
    assert fp32.calibration is None
    assert "QuantizeLinear" in int8.operators and "QuantizeLinear" not in fp32.operators
    assert 0 <= int8.metrics["top1_agreement_with_fp32"] <= 1
    parity = int8.metrics["int8_parity"]
    assert parity["min_agreement"] == 0.998 and rows[1].parity == parity["detail"]
    assert parity["met"] == (parity["detail"] == "met") and "parity" not in str(fp32.metrics)
    assert int8.bytes < fp32.bytes / 2
    assert oct((out / "cbam_cnn_int8.onnx").stat().st_mode & 0o777) == "0o644"


def test_int8_onnx_keeps_only_the_spatial_gates_in_float(exported):
    import onnx

    from edgehemo.export.quantize import float_islands

    out, _ = exported
    graph = onnx.load(str(out / "cbam_cnn_int8.onnx")).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    float_convs = [node for node in convs if node.input[1] not in dequantized]
    # One 2->1 channel gate per CBAM block (4 in CBAM-CNN); every other convolution is int8.
    assert len(float_convs) == 4 and len(convs) > 4
    assert len(float_islands(onnx.load(str(out / "cbam_cnn_fp32.onnx")))) == 8  # convs + sigmoids


def test_int8_channel_maxima_keep_their_inputs_scale_so_they_run_on_uint8(exported):
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import registry

    out, _ = exported
    graph = onnx.load(str(out / "cbam_cnn_int8.onnx")).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    maxima = [node for node in graph.node if node.op_type == "ReduceMax"]
    assert len(maxima) == 4  # one channel max per CBAM block
    for node in maxima:
        before = producer[node.input[0]]
        (after,) = consumers[node.output[0]]
        assert (before.op_type, after.op_type) == ("DequantizeLinear", "QuantizeLinear")
        for scale_or_zero_point in (1, 2):
            assert np.array_equal(values[before.input[scale_or_zero_point]],
                                  values[after.input[scale_or_zero_point]])
    assert "ReduceMax" not in registry.QDQRegistry  # the quantiser's table is left as it was


def test_classifier_runs_raw_images_of_any_size(exported, samples_dir):
    out, _ = exported
    classifier = Classifier.load(out / "cbam_cnn_fp32.onnx")
    images = [load_image(path) for path in sorted(samples_dir.glob("*/*.jpg"))[:3]]
    images.append(images[0][:100, :120])  # a tight crop of another size
    probabilities = classifier.predict_raw(images)
    assert probabilities.shape == (4, 8)
    assert np.allclose(probabilities.sum(1), 1, atol=1e-5)
    framed = load_image_folder(samples_dir, "test", classifier.manifest.preprocessing)
    # raw images through predict_raw == framed images through predict_framed
    assert np.allclose(classifier.predict_raw(images[:3]),
                       classifier.predict_framed(framed.images[:3]), atol=1e-5)


def test_corrupt_or_mismatched_artifacts_are_refused(exported, tmp_path):
    out, _ = exported
    for name in ("cbam_cnn_fp32.onnx", "cbam_cnn_fp32.onnx.json"):
        shutil.copy(out / name, tmp_path / name)
    artifact = tmp_path / "cbam_cnn_fp32.onnx"
    data = artifact.read_bytes()
    artifact.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        Classifier.load(artifact)
    artifact.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="sha256"):
        Classifier.load(artifact)
    artifact.write_bytes(data)
    manifest = json.loads(manifest_path_for(artifact).read_text())
    manifest["input"]["shape"] = ["batch", 3, 224, 224]
    manifest_path_for(artifact).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="belongs to another model"):
        Classifier.load(artifact)
    with pytest.raises(BackendError, match=r"unknown backend 'cpuu'\. Did you mean: cpu"):
        Classifier.load(artifact, backend="cpuu")
    with pytest.raises(ModelNotFoundError, match="no exported model named"):
        Classifier.load("no_such_model_int8")
    picture = tmp_path / "cell.jpg"  # an existing file that is no model: said so
    picture.write_bytes(b"\xff\xd8 not a model")
    with pytest.raises(ModelNotFoundError, match=r"cell\.jpg: not an exported model"):
        Classifier.load(picture)
    # a model exported only as ONNX (the test's export): the LiteRT backend says which one runs it
    user = tmp_path / "models"
    user.mkdir()
    shutil.copy(out / "cbam_cnn_int8.onnx", user / "site_int8.onnx")
    shutil.copy(out / "cbam_cnn_int8.onnx.json", user / "site_int8.onnx.json")
    with pytest.raises(ModelNotFoundError, match=r"site_int8 exists only as onnx; this "
                       r"backend runs tflite: run it with --backend cpu"):
        Classifier.load("site_int8", backend="tflite", models_dir=user)
    with pytest.raises(ModelNotFoundError, match=r"site_int8\.onnx: its format is onnx; this "
                       r"backend runs tflite: run it with --backend cpu"):  # by path: same hint
        Classifier.load(user / "site_int8.onnx", backend="tflite")


def test_export_can_leave_the_int8_biases_as_the_quantiser_wrote_them(exported, checkpoint,
                                                                      tiny_npz, tmp_path):
    from typer.testing import CliRunner

    from edgehemo.cli import app

    result = CliRunner().invoke(app, [
        "export", str(checkpoint), "--formats", "onnx,onnx-int8", "--calibration",
        str(tiny_npz), "--calibration-count", "32", "--out", str(tmp_path),
        "--no-bias-correction"])
    assert result.exit_code == 0, result.output
    plain = read_manifest(tmp_path / "cbam_cnn_int8.onnx.json")
    corrected = read_manifest(exported[0] / "cbam_cnn_int8.onnx.json")
    assert plain.calibration["bias_correction"] == "none"
    assert plain.sha256 != corrected.sha256 and plain.bytes == corrected.bytes


def test_export_records_what_capture_feeds_the_model(checkpoint, tmp_path):
    export_model(checkpoint, formats=["onnx"], calibration=None, out=tmp_path,
                 takes="whole_frame")
    assert read_manifest(tmp_path / "cbam_cnn_fp32.onnx.json").takes == "whole_frame"
    result = subprocess.run([sys.executable, "-m", "edgehemo.cli", "export", str(checkpoint),
                             "--formats", "onnx", "--takes", "fields", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "cell_crop, whole_frame" in result.stderr


def test_export_refuses_bad_input(checkpoint, tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        parse_formats("onnx,coreml")
    with pytest.raises(ValueError, match="--calibration PATH is required for onnx-int8"):
        export_model(checkpoint, formats=["onnx-int8"], calibration=None, out=tmp_path / "a")
    few = tmp_path / "few.npz"
    with np.load(tiny_npz) as arrays:
        np.savez(few, train_images=arrays["train_images"][:8],
                 train_labels=arrays["train_labels"][:8], class_names=arrays["class_names"])
    with pytest.raises(DatasetError, match="8 calibration images; at least 16"):
        export_model(checkpoint, formats=["onnx-int8"], calibration=few, out=tmp_path / "b")
    assert not list((tmp_path / "b").glob("*int8*"))
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(CheckpointError, match="not writable"):
            export_model(checkpoint, formats=["onnx"], calibration=None, out=locked / "x")


def test_evaluate_exported_model_without_torch(exported, tiny_npz):
    out, _ = exported
    code = (
        "import json, sys\n"
        "from edgehemo.device.evaluate import evaluate_artifact\n"
        f"report = evaluate_artifact({str(out / 'cbam_cnn_int8.onnx')!r}, {str(tiny_npz)!r})\n"
        "print(json.dumps({'accuracy': report['accuracy'], 'torch': 'torch' in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    answer = json.loads(result.stdout)
    manifest = read_manifest(out / "cbam_cnn_int8.onnx.json")
    assert answer["torch"] is False
    assert answer["accuracy"] == pytest.approx(manifest.metrics["test"]["accuracy"], abs=1e-6)


def test_classify_command_end_to_end_without_torch(exported, samples_dir, tmp_path):
    out, _ = exported
    folder = tmp_path / "mixed"
    shutil.copytree(samples_dir / "platelet", folder / "platelet")
    (folder / "notes.txt").write_text("not an image")
    code = (
        "import sys\n"
        "from edgehemo.cli import main\n"
        f"sys.argv = ['edgehemo', 'classify', {str(folder)!r}, '--model', "
        f"{str(out / 'cbam_cnn_int8.onnx')!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=env)
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and {"path", "label", "confidence", "topk"} <= set(rows[0])
    assert len(rows[0]["topk"]) == 3
    assert rows[0]["confidence"] == pytest.approx(rows[0]["topk"][0]["probability"], abs=1e-6)
    assert "skipped" in result.stderr and "notes.txt" in result.stderr
    assert "TORCH False" in result.stderr


def test_gpu_backend_without_gpu_providers_says_how_to_fix(exported):
    import onnxruntime

    out, _ = exported
    if {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(
        onnxruntime.get_available_providers()
    ):
        pytest.skip("this machine has GPU providers; the error path cannot be reached")
    with pytest.raises(BackendError, match=r"onnxruntime-gpu.*cpu backend runs without a GPU"):
        Classifier.load(out / "cbam_cnn_fp32.onnx", backend="gpu")


def test_user_models_directory_is_searched_first(exported, monkeypatch, tmp_path):
    from edgehemo.models import resolve_artifact, shipped_weights_dir

    out, _ = exported
    monkeypatch.setenv("EDGEHEMO_MODELS_DIR", str(out))
    assert resolve_artifact("cbam_cnn_int8").path == out / "cbam_cnn_int8.onnx"
    monkeypatch.setenv("EDGEHEMO_MODELS_DIR", str(tmp_path / "absent"))
    assert resolve_artifact("cbam_cnn_int8").path.parent == shipped_weights_dir()


def _converter_available():
    from edgehemo.export.tflite import ConverterError, converter_python

    try:
        converter_python()
    except ConverterError:
        return False
    return True


@pytest.mark.skipif(not _converter_available(),
                    reason="the TFLite converter environment is absent (make tflite-env)")
def test_tflite_export_is_full_integer_and_runs_on_litert(checkpoint, tiny_npz, tmp_path):
    rows = export_model(checkpoint, formats=["tflite", "tflite-int8"], calibration=tiny_npz,
                        calibration_count=32, eval_data=tiny_npz, out=tmp_path)
    assert [row.status for row in rows] == ["passed", "passed"]
    int8 = read_manifest(tmp_path / "cbam_cnn_int8.tflite.json")
    assert int8.input.dtype == "int8" and int8.output.dtype == "int8"
    assert int8.input.shape == [1, 64, 64, 3] and int8.input.layout == "NHWC"
    assert int8.metrics["top1_agreement_with_fp32"] >= 0.9
    # 29 corrected layers: per stage its convolution, the channel MLP's 4 and the spatial gate's
    # 2 strip convolutions; and the dense layer
    assert int8.calibration["bias_correction"] == "empirical, 29 layers (ReLU-aware)"
    assert not (tmp_path / "cbam_cnn_fp32.onnx").exists()  # onnx was not asked for
    classifier = Classifier.load(tmp_path / "cbam_cnn_int8.tflite", backend="tflite")
    assert classifier.predict_framed(np.zeros((3, 64, 64, 3), np.uint8)).shape == (3, 8)


@pytest.mark.skipif(not _converter_available(),
                    reason="the TFLite converter environment is absent (make tflite-env)")
def test_tflite_export_keeps_the_converters_file_when_bias_correction_cannot_match_it(
        checkpoint, tiny_npz, tmp_path, monkeypatch, caplog):
    from edgehemo.export import tflite_bias_correction

    def mismatched(*_args):
        raise ValueError("the fp32 and int8 TFLite models have different layers")

    monkeypatch.setattr(tflite_bias_correction, "correct_tflite_biases", mismatched)
    rows = export_model(checkpoint, formats=["tflite-int8"], calibration=tiny_npz,
                        calibration_count=32, eval_data=tiny_npz, out=tmp_path)
    assert [row.status for row in rows] == ["passed"]
    assert read_manifest(tmp_path / "cbam_cnn_int8.tflite.json").calibration[
        "bias_correction"] == "none"
    assert "left as the converter wrote it: the fp32 and int8 TFLite models" in caplog.text


def test_tflite_export_without_converter_says_how_to_get_it(checkpoint, tiny_npz, tmp_path,
                                                            monkeypatch):
    from edgehemo.export import tflite

    monkeypatch.setenv("EDGEHEMO_TFLITE_PYTHON", str(tmp_path / "no-python"))
    monkeypatch.setattr(tflite, "__file__", str(tmp_path / "export" / "tflite.py"))
    with pytest.raises(tflite.ConverterError, match="make tflite-env"):
        export_model(checkpoint, formats=["tflite-int8"], calibration=tiny_npz, out=tmp_path)
    assert not list(tmp_path.glob("*.onnx"))


def test_calibration_sample_is_stratified_seeded_and_refuses_too_few():
    from edgehemo.datasets import ImageSet
    from edgehemo.export.quantize import calibration_indices, calibration_subset

    labels = np.repeat(np.arange(4), 10)
    data = ImageSet(images=np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1).repeat(3, 3),
                    labels=labels, classes=("a", "b", "c", "d"),
                    files=tuple(f"{i}.png" for i in range(40)), source="mem")
    chosen = calibration_indices(data, 8)
    assert np.bincount(labels[chosen]).tolist() == [2, 2, 2, 2]
    assert (chosen == calibration_indices(data, 8)).all() and (np.diff(chosen) > 0).all()
    assert (calibration_subset(data, 8).images == data.images[chosen]).all()
    assert calibration_subset(data, 100) is data
    with pytest.raises(DatasetError, match="at least 16"):
        calibration_indices(data.subset(np.arange(8)), 4)


def test_int8_parity_rule_names_what_falls_short():
    from edgehemo.export.pipeline import int8_parity

    assert int8_parity(0.9814, 0.9818, 0.9997) == (True, "met")
    met, detail = int8_parity(0.97375, 0.97125, 0.9975)  # HemoNet's int8 ONNX
    assert not met and detail == ("agreement 99.75% < 99.8%; "
                                  "accuracy 0.25 points under fp32 (at most 0.2 either way)")
    met, detail = int8_parity(0.9662, 0.9688, 0.999)
    assert not met and detail.startswith("accuracy 0.26 points above fp32")


def test_int8_can_keep_the_logits_layer_the_stem_or_a_named_node_in_float(tmp_path):
    import onnx

    from edgehemo.export import onnx_export
    from edgehemo.export.quantize import float_islands, kept_in_float
    from edgehemo.train.registry import create_model

    path = tmp_path / "cbam.onnx"
    onnx_export.export_onnx(create_model("cbam_cnn", num_classes=8).eval(), 64, path)
    graph = onnx.load(str(path))
    gates = float_islands(graph)
    assert kept_in_float(graph) == gates and len(gates) == 8  # 4 gates: conv + sigmoid each
    head = kept_in_float(graph, ("head",))[len(gates):]
    stem = kept_in_float(graph, ("stem",))[len(gates):]
    kinds = {node.name: node.op_type for node in graph.graph.node}
    assert [kinds[name] for name in head] == ["Gemm"] and [kinds[n] for n in stem] == ["Conv"]
    assert stem[0] == next(n.name for n in graph.graph.node if n.op_type == "Conv")
    with pytest.raises(ValueError, match="cannot keep tail in float"):
        kept_in_float(graph, ("tail",))
    third = [n.name for n in graph.graph.node if n.op_type == "Conv"][2]
    assert kept_in_float(graph, (f"node:{third}",)) == [*gates, third]
    with pytest.raises(ValueError, match="no such node"):
        kept_in_float(graph, ("node:/model/missing/Conv",))


@pytest.mark.parametrize("backend", ["cpu", "tflite"])
def test_test_time_augmentation_averages_each_image_and_its_mirror_images(backend, samples_dir):
    plain = Classifier.load("cbam_cnn_int8", backend=backend)
    tta = Classifier.load("cbam_cnn_int8", backend=backend, tta=True)
    data = load_image_folder(samples_dir, "test", plain.manifest.preprocessing)
    images = data.images[:8]
    views = [images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]]
    expected = np.mean([plain.predict_framed(np.ascontiguousarray(v)) for v in views], axis=0)
    averaged = tta.predict_framed(images)
    # the same views, up to float rounding before the int8 input quantisation
    assert np.abs(averaged - expected).max() < 2e-3
    assert np.abs(averaged - plain.predict_framed(images)).max() > 5e-3
    raw = [load_image(samples_dir / path) for path in data.files[:2]]
    assert np.allclose(tta.predict_raw(raw).sum(axis=1), 1, atol=1e-5)


def test_litert_quantises_the_input_as_round_half_to_even_of_value_over_scale():
    from edgehemo.device.backends.litert import model_input

    backend = Classifier.load("cbam_cnn_int8", backend="tflite").backend
    scale, zero_point = backend._input["quantization"]
    rng = np.random.default_rng(1)
    batch = (rng.standard_normal((2, 3, 64, 64)) * 3).astype(np.float32)
    batch.flat[:40] = (np.arange(40, dtype=np.float32) - 20.5 - zero_point) * scale  # halves
    nhwc = batch.transpose(0, 2, 3, 1)
    expected = np.clip(np.round(nhwc / scale + zero_point), -128, 127).astype(np.int8)
    exact = nhwc.astype(np.float64) / scale + zero_point
    assert np.array_equal(model_input(nhwc, backend._input), expected)
    got = backend._quantize(batch)  # OpenCV on the planes: x * (1 / scale) in float32
    assert got.dtype == np.int8 and got.flags["C_CONTIGUOUS"] and got.shape == nhwc.shape
    off = got.astype(int) != expected
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert np.all(np.abs(np.abs(exact[off] - np.floor(exact[off])) - 0.5) < 1e-4)  # ties only
    assert got.min() == -128 and got.max() == 127  # +-3 sigma reaches past the int8 range


def test_litert_input_conversion_with_and_without_opencv_for_8_bit_inputs(monkeypatch):
    from edgehemo.device.backends import litert

    rng = np.random.default_rng(2)
    batch = (rng.standard_normal((3, 3, 8, 5)) * 2).astype(np.float32)  # not square, batch 3
    for dtype, zero_point in ((np.int8, -3), (np.uint8, 128)):
        detail = {"dtype": dtype, "quantization": (0.02, zero_point)}
        reference = litert.model_input(batch.transpose(0, 2, 3, 1), detail)
        fast = litert.nhwc_model_input(batch, detail)
        assert fast.dtype == dtype and fast.shape == (3, 8, 5, 3) and fast.flags["C_CONTIGUOUS"]
        assert np.abs(fast.astype(int) - reference.astype(int)).max() <= 1
        info = np.iinfo(dtype)
        assert fast.min() == info.min and fast.max() == info.max  # saturated, not wrapped
        monkeypatch.setattr(litert, "_opencv", lambda: None)  # the tflite extra without OpenCV
        assert np.array_equal(litert.nhwc_model_input(batch, detail), reference)
        monkeypatch.undo()
