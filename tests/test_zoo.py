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
    "cbam_cnn_gn": 466_188,  # GroupNorm has BatchNorm's affine parameters
    "vgg15": 7_076_840,
    "se_vgg15": 7_252_672,  # paper ~7.2M
    "sa_vgg15": 7_077_335,
    "cbam_vgg15": 7_253_167,
    "hemonet": 26_099_025,
    "hemonet_gap": 539_985,
}

# Backbone ("features") parameters against the reference implementations (torchvision's
# densenet201 / vgg19_bn / efficientnet_v2_s / efficientnet_b3 minus their ImageNet classifier).
BACKBONE_PARAMS = {
    "densenet201_cbam": 18_092_928,
    "vgg19_mhsa": 20_035_392,
    "efficientnetv2_s_ma": 20_177_488,
    "efficientnet_b3_ma": 10_696_232,
}


def test_every_architecture_is_registered():
    assert set(EXPECTED_PARAMS) <= set(list_models())
    assert list_models("cbam*") == ["cbam_cnn", "cbam_cnn_gn", "cbam_vgg15"]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_count(name):
    assert count_parameters(create_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", ["cnn", "se_cnn", "sa_cnn", "cbam_cnn", "cbam_cnn_gn", "vgg15",
                                  "cbam_vgg15"])
def test_output_shape_compact(name):
    model = create_model(name, num_classes=5).eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_the_group_norm_variant_normalises_each_image_by_itself():
    from edgehemo.models import resolve_weights
    from edgehemo.train.blocks import conv_bn_relu
    from edgehemo.train.evaluate import load_model

    model = create_model("cbam_cnn_gn").eval()
    kinds = {type(m).__name__ for m in model.modules()}
    assert "GroupNorm" in kinds and "BatchNorm2d" not in kinds
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():  # each block normalises its own image: a darker exposure is the same
        logits = model(images)
        assert (logits[0] - logits[1]).abs().max() > 0.01  # it does see the images
        assert torch.allclose(model(0.5 * images), logits, atol=1e-3)
        trained = resolve_weights("cbam_cnn_lab")  # BatchNorm: PBC's statistics, whatever comes
        batch_norm = load_model(trained.checkpoint, trained.card).eval()
        assert (batch_norm(0.5 * images) - batch_norm(images)).abs().max() > 0.1
    with pytest.raises(ValueError, match="unknown norm"):
        conv_bn_relu(3, 8, norm="layer")


def test_input_size_is_a_parameter():
    model = create_model("cbam_cnn", input_size=128).eval()
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 8)
    with pytest.raises(ValueError, match="multiple of 16"):
        create_model("cbam_cnn", input_size=70)


def test_hemonet_forward_and_classifier_size():
    model = create_model("hemonet").eval()
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)
    first_dense = model.classifier[2]
    assert first_dense.in_features == 50_176 and first_dense.out_features == 512


def test_unknown_model_names_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean: cbam_cnn"):
        create_model("cbam-cnn")


def test_duplicate_registration_is_refused():
    def cbam_cnn():  # same name as a registered model
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        register_model(input_size=64, family="x")(cbam_cnn)


@pytest.mark.parametrize("name", sorted(BACKBONE_PARAMS))
def test_literature_models_match_their_reference_backbones_and_run(name):
    model = create_model(name, num_classes=4).eval()
    backbone = sum(p.numel() for n, p in model.named_parameters() if n.startswith("features."))
    assert backbone == BACKBONE_PARAMS[name]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)


def test_pretrained_weights_load_what_fits_and_refuse_what_does_not(tmp_path):
    from edgehemo.errors import CheckpointError
    from edgehemo.train.loop import load_pretrained

    source = create_model("hemonet_gap", num_classes=3)
    backbone = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    path = tmp_path / "backbone.pt"
    torch.save(backbone, path)
    target = create_model("hemonet_gap", num_classes=8)
    loaded = load_pretrained(target, path)
    assert loaded == sorted(backbone)
    first = next(iter(backbone))
    assert torch.equal(target.state_dict()[first], source.state_dict()[first])
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="none of its 1 tensors fits"):
        load_pretrained(target, tmp_path / "other.pt")
