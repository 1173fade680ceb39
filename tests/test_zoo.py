import pytest
import torch

from edgehemo.train.registry import (
    UnknownModelError,
    count_parameters,
    create_model,
    list_models,
    register_model,
)

# (paper's figure, our count): the paper rounds to 0.01M; VGG15's head is not given in the paper.
EXPECTED_PARAMS = {
    "cnn": 421_672,
    "se_cnn": 465_792,  # paper 0.46M
    "sa_cnn": 422_068,  # paper 0.42M
    "cbam_cnn": 466_188,  # paper 0.47M
    "vgg15": 7_076_840,
    "se_vgg15": 7_252_672,  # paper ~7.2M
    "sa_vgg15": 7_077_335,
    "cbam_vgg15": 7_253_167,
    "hemonet": 26_099_025,
}


def test_every_architecture_is_registered():
    assert set(EXPECTED_PARAMS) <= set(list_models())
    assert list_models("cbam*") == ["cbam_cnn", "cbam_vgg15"]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_count(name):
    assert count_parameters(create_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", ["cnn", "se_cnn", "sa_cnn", "cbam_cnn", "vgg15", "cbam_vgg15"])
def test_output_shape_compact(name):
    model = create_model(name, num_classes=5).eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_input_size_is_a_parameter():
    model = create_model("cbam_cnn", input_size=128).eval()
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 8)
    with pytest.raises(ValueError, match="multiple of 16"):
        create_model("cbam_cnn", input_size=70)


def test_hemonet_forward_and_classifier_size():
    model = create_model("hemonet").eval()
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)
    first_dense = model.classifier[1]
    assert first_dense.in_features == 50_176 and first_dense.out_features == 512


def test_unknown_model_names_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean: cbam_cnn"):
        create_model("cbam-cnn")


def test_duplicate_registration_is_refused():
    def cbam_cnn():  # same name as a registered model
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        register_model(input_size=64, family="x")(cbam_cnn)
