"""Compact checkpoints: int8-per-row weight matrices that load back as an ordinary model."""

import pytest
import torch

from edgehemo.errors import CheckpointError
from edgehemo.models import resolve_weights
from edgehemo.train.compact import INT8_SUFFIX, compress_state, expand_state
from edgehemo.train.evaluate import load_model
from edgehemo.train.registry import create_model


def test_round_trip_error_is_within_half_a_step_per_row():
    torch.manual_seed(0)
    state = {"big.weight": torch.randn(64, 300), "small.weight": torch.randn(4, 4),
             "counter": torch.tensor(3)}
    packed = compress_state(state, min_elements=10_000)
    assert packed["big.weight" + INT8_SUFFIX].dtype == torch.int8
    assert torch.equal(packed["small.weight"], state["small.weight"])
    restored = expand_state(packed)
    assert set(restored) == set(state)
    step = state["big.weight"].abs().amax(dim=1, keepdim=True) / 127
    assert bool(((restored["big.weight"] - state["big.weight"]).abs() <= step / 2 + 1e-7).all())
    assert expand_state(state) == state  # an ordinary state dict passes through


def test_a_compact_checkpoint_loads_and_predicts_like_the_original(tmp_path):
    torch.manual_seed(0)
    model = create_model("hemonet_gap", num_classes=3, input_size=64).eval()
    path = tmp_path / "compact.pt"
    torch.save(compress_state(model.state_dict(), min_elements=50_000), path)
    assert any(k.endswith(INT8_SUFFIX) for k in torch.load(path, weights_only=True))
    card = resolve_weights("cbam_cnn").card.model_copy(update={
        "architecture": "hemonet_gap", "classes": ("a", "b", "c"), "checkpoint_sha256": ""})
    loaded = load_model(path, card)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=0.05)
    broken = {k: v for k, v in compress_state(model.state_dict(), min_elements=50_000).items()
              if not k.endswith(".__scale")}
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="without their scales"):
        load_model(path, card)
