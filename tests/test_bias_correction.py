"""Empirical bias correction of the int8 ONNX graph, on the shipped CBAM-CNN and bundled images."""

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
from edgehemo.models import resolve_weights
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
