"""Empirical bias correction of the int8 ONNX and TFLite files, on the shipped CBAM-CNN and the
bundled crops."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgehemo.datasets import load_image_folder
from edgehemo.export import onnx_export
from edgehemo.export.bias_correction import (
    correct_biases,
    mean_output_errors,
    quantised_layers,
)
from edgehemo.export.quantize import quantize_onnx
from edgehemo.models import resolve_artifact, resolve_weights
from edgehemo.preprocess import normalize
from edgehemo.train.evaluate import load_model


@pytest.fixture(scope="module")
def quantised(tmp_path_factory, samples_dir):
    """The shipped cbam_cnn's int8-graph, quantised on the 32 bundled crops with and without
    bias correction."""
    out = tmp_path_factory.mktemp("bias")
    weights = resolve_weights("cbam_cnn")
    spec = weights.card.preprocessing
    images = load_image_folder(samples_dir, "test", spec)
    graph = out / "graph.onnx"
    onnx_export.export_onnx(load_model(weights.checkpoint, weights.card), spec.input_size, graph,
                            graph="ort-int8")
    plain, corrected = out / "plain.onnx", out / "corrected.onnx"
    assert quantize_onnx(graph, plain, images, spec, bias_correction=False) == []
    shifts = quantize_onnx(graph, corrected, images, spec)
    batches = [normalize(images.images[i : i + 16], spec) for i in range(0, len(images), 16)]
    return graph, plain, corrected, shifts, batches


def test_corrected_layers_match_the_float_graphs_mean_output_channel_by_channel(quantised):
    graph, plain, corrected, shifts, batches = quantised
    float_model = onnx.load(str(graph))
    before = mean_output_errors(float_model, onnx.load(str(plain)), batches, input_name="input")
    after = mean_output_errors(float_model, onnx.load(str(corrected)), batches,
                               input_name="input")
    assert list(before) == [shift.layer for shift in shifts] and len(shifts) == 13
    int8 = onnx.load(str(corrected))
    initializers = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    for layer in quantised_layers(int8):
        # a bias code moves the output by in_scale x weight_scale: an error under half of that
        # (the first convolution's, on 3 input channels) cannot be corrected
        half_code = initializers[layer.bias_scale] / 2
        error, left = before[layer.node.name], after[layer.node.name]
        assert (np.abs(left).mean() < 0.02 * np.abs(error).mean()
                or np.all(np.abs(left) <= half_code + 1e-6)), layer.node.name
    first = shifts[0]
    assert first.mean_abs_shift == pytest.approx(np.abs(before[first.layer]).mean(), rel=1e-6)


def test_only_bias_codes_change(quantised):
    _, plain, corrected, shifts, _ = quantised
    old = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(plain)).graph.initializer}
    new = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(corrected)).graph.initializer}
    assert old.keys() == new.keys()
    changed = {name for name in old if not np.array_equal(old[name], new[name])}
    assert changed and all(new[name].dtype == np.int32 for name in changed)
    assert len(changed) <= len(shifts)


def test_bias_correction_refuses_a_float_graph_of_another_export(quantised):
    graph, plain, _, _, batches = quantised
    other = onnx.load(str(graph))
    for node in other.graph.node:
        node.name = f"renamed{node.name}"
    with pytest.raises(ValueError, match="needs the float graph the int8 one was quantised"):
        correct_biases(other, onnx.load(str(plain)), batches, input_name="input")
    with pytest.raises(ValueError, match="at least one batch"):
        correct_biases(onnx.load(str(graph)), onnx.load(str(plain)), [], input_name="input")


@pytest.fixture(scope="module")
def litert_pair(samples_dir):
    """The shipped cbam_cnn fp32 and int8 TFLite files and the bundled crops as their input."""
    pytest.importorskip("ai_edge_litert", reason="TFLite bias correction needs ai-edge-litert")
    int8 = resolve_artifact("cbam_cnn_int8", formats=("tflite",))
    fp32 = resolve_artifact("cbam_cnn_fp32", formats=("tflite",))
    spec = int8.manifest.preprocessing
    images = load_image_folder(samples_dir, "test", spec)
    nhwc = np.ascontiguousarray(normalize(images.images, spec).transpose(0, 2, 3, 1))
    return fp32.path.read_bytes(), int8.path.read_bytes(), nhwc


def _with_bias_offsets(int8: bytes, fraction: float) -> bytes:
    """`int8` with every biased layer's bias moved by `fraction` of its largest code."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgehemo.export.tflite_bias_correction import biased_layers

    model = schema.ModelT.InitFromPackedBuf(int8, 0)
    for layer in biased_layers(model):
        buffer = model.buffers[model.subgraphs[0].tensors[layer.bias].buffer]
        codes = np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), np.int32)
        moved = codes + np.int32(max(1, int(fraction * np.abs(codes).max())))
        buffer.data = np.frombuffer(moved.astype(np.int32).tobytes(), np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_tflite_bias_correction_removes_rounding_and_injected_bias_errors(litert_pair):
    from edgehemo.export.tflite_bias_correction import (
        correct_tflite_biases,
        mean_output_errors,
    )

    def total_error(int8: bytes) -> float:
        return sum(float(np.abs(e).mean()) for e in mean_output_errors(fp32, int8, images))

    fp32, int8, images = litert_pair
    shipped = total_error(int8)  # the shipped file, corrected on 512 PBC training images
    corrected, shifts = correct_tflite_biases(fp32, int8, images)
    assert len(shifts) == 29 and total_error(corrected) < 0.7 * shipped
    offset = _with_bias_offsets(int8, 0.02)
    injected = total_error(offset)
    assert injected > 3 * shipped
    left = total_error(correct_tflite_biases(fp32, offset, images)[0])
    assert left < 0.1 * injected and left < shipped


def test_tflite_bias_correction_changes_only_bias_codes_and_refuses_another_model(litert_pair):
    from ai_edge_litert import schema_py_generated as schema

    from edgehemo.export.tflite_bias_correction import biased_layers, correct_tflite_biases

    fp32, int8, images = litert_pair
    corrected, _ = correct_tflite_biases(fp32, int8, images[:8])
    before = schema.ModelT.InitFromPackedBuf(int8, 0)
    after = schema.ModelT.InitFromPackedBuf(corrected, 0)
    bias_buffers = {before.subgraphs[0].tensors[layer.bias].buffer
                    for layer in biased_layers(before)}
    changed = {i for i, (a, b) in enumerate(zip(before.buffers, after.buffers, strict=True))
               if not np.array_equal(np.asarray(a.data), np.asarray(b.data))}
    assert changed and changed <= bias_buffers
    other = _with_bias_offsets(int8, 0.0)  # same layers: accepted
    correct_tflite_biases(fp32, other, images[:1])
    se_fp32 = resolve_artifact("se_cnn_fp32", formats=("tflite",)).path.read_bytes()
    with pytest.raises(ValueError, match="the two files of one conversion"):
        correct_tflite_biases(se_fp32, int8, images[:1])
    with pytest.raises(ValueError, match="at least one calibration image"):
        correct_tflite_biases(fp32, int8, images[:0])
