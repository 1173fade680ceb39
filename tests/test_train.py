import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgehemo.cards import read_card
from edgehemo.preprocess import PreprocessSpec
from edgehemo.train.augment import PRESETS, augment
from edgehemo.train.data import TrainBatches
from edgehemo.train.evaluate import evaluate_checkpoint
from edgehemo.train.loop import TrainConfig, _fast_forwarded_onecycle, planned_epochs, train
from edgehemo.train.losses import FocalLoss


def _config(tiny_npz, out, **overrides):
    values = dict(epochs=6, batch_size=16, lr=3e-3, ema=0.0, augment="none", seed=1, threads=1)
    values.update(overrides)
    return TrainConfig.from_recipe("cbam_cnn", tiny_npz, out, **values)


def _one_cycle_lr(max_lr, *, epochs, steps, steps_per_epoch=2):
    """The learning rate of a one-cycle schedule over `epochs` after `steps` steps."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch)
    for _ in range(steps):
        optimizer.step()
        schedule.step()
    return optimizer.param_groups[0]["lr"]


def test_short_training_makes_the_loss_fall_and_writes_a_card(tiny_npz, tmp_path):
    result = train(_config(tiny_npz, tmp_path / "run"))
    losses = [record.train_loss for record in result.history]
    assert losses[-1] < 0.5 * losses[0]
    card = read_card(tmp_path / "run" / "best.json")
    assert card.architecture == "cbam_cnn" and card.num_params == 466_188
    assert card.classes[0] == "basophil" and card.training.epochs_run == 6
    assert len(card.checkpoint_sha256) == 64
    rows = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["epoch"] for row in rows] == list(range(1, 7))
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch,train_loss")
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    # The best checkpoint loads with weights_only and gives the card's validation accuracy.
    report = evaluate_checkpoint(tmp_path / "run" / "best.pt", tiny_npz, "val")
    assert report["accuracy"] == pytest.approx(card.metrics["val"]["accuracy"], abs=1e-4)


def test_same_seed_same_result(tiny_npz, tmp_path):
    first = train(_config(tiny_npz, tmp_path / "a", epochs=2, augment="strong"))
    second = train(_config(tiny_npz, tmp_path / "b", epochs=2, augment="strong"))
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]


def test_resume_continues_where_it_stopped(tiny_npz, tmp_path):
    out = tmp_path / "run"
    train(_config(tiny_npz, out, epochs=2, schedule="cosine"))
    resumed = train(_config(tiny_npz, out, epochs=4, schedule="cosine", resume=True))
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]


def test_a_time_budget_shortens_the_run_to_what_fits(tiny_npz, tmp_path):
    config = _config(tiny_npz, tmp_path / "run", epochs=6, time_budget=1.0)
    assert planned_epochs(config, seconds_per_epoch=25.0) == 2
    assert planned_epochs(config, seconds_per_epoch=5.0) == 6  # never more than asked
    assert planned_epochs(config, seconds_per_epoch=600.0) == 1
    # Two epochs took 40 s (a slow first one): 20 s left hold two more of 10 s.
    assert planned_epochs(config, 10.0, elapsed=40.0, epochs_done=2) == 4
    # A budget no epoch fits in: one epoch, and the card says so.
    result = train(_config(tiny_npz, tmp_path / "run", epochs=6, time_budget=1e-9))
    assert len(result.history) == 1 and result.card.training.epochs_run == 1
    assert result.card.training.hyperparameters["time_budget"] == 1e-9


def test_a_run_cut_by_its_budget_ends_its_schedule_and_resumes_as_cut(tiny_npz, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr("edgehemo.train.loop.planned_epochs", lambda *args, **kwargs: 3)
    config = _config(tiny_npz, tmp_path / "run", epochs=5, time_budget=600.0)
    result = train(config)
    assert [r.epoch for r in result.history] == [1, 2, 3]
    # The run's last learning rate is that of a one-cycle schedule planned for 3 epochs from
    # the start (32 images in batches of 16: 2 steps per epoch).
    assert result.history[-1].lr == pytest.approx(_one_cycle_lr(config.lr, epochs=3, steps=6))
    resumed = train(_config(tiny_npz, tmp_path / "run", epochs=5, time_budget=600.0,
                            resume=True))
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    with pytest.raises(ValueError, match="minutes must be positive"):
        train(_config(tiny_npz, tmp_path / "other", time_budget=-1.0))


def test_epochs_that_slow_down_mid_run_are_re_planned_so_the_schedule_still_anneals(
        tiny_npz, tmp_path, monkeypatch):
    # The plan after epoch 2 holds 5 epochs; after epoch 3 (a sibling run started) only 4 fit.
    monkeypatch.setattr("edgehemo.train.loop.planned_epochs",
                        lambda config, pace, *, elapsed, epochs_done: 5 if epochs_done < 3 else 4)
    config = _config(tiny_npz, tmp_path / "run", epochs=6, time_budget=600.0)
    result = train(config)
    assert [r.epoch for r in result.history] == [1, 2, 3, 4]
    # Its schedule ended as a 4-epoch one does (not 3 epochs into the 5-epoch plan).
    assert result.history[-1].lr == pytest.approx(_one_cycle_lr(config.lr, epochs=4, steps=8))
    assert result.history[-1].lr != pytest.approx(_one_cycle_lr(config.lr, epochs=5, steps=8))


def test_a_shortened_one_cycle_schedule_still_ends_at_its_floor():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    config = TrainConfig(model="cbam_cnn", data=Path("x"), out=Path("y"), lr=1e-3, epochs=10)
    full = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, epochs=10,
                                               steps_per_epoch=5)
    for _ in range(10):
        optimizer.step()
        full.step()
    lr_before = optimizer.param_groups[0]["lr"]
    shortened = _fast_forwarded_onecycle(config, optimizer, 5, epochs=4, steps_done=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_before, rel=0.5)
    for _ in range(9):
        optimizer.step()
        shortened.step()
    assert optimizer.param_groups[0]["lr"] < 1e-3 / 1000


def test_a_misspelt_device_is_named(tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="'cdua' is not a torch device"):
        train(_config(tiny_npz, tmp_path / "run", device="cdua"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_training_on_a_missing_gpu_says_so(tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        train(_config(tiny_npz, tmp_path / "run", device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_training_on_a_gpu_gives_a_checkpoint_for_cpu(tiny_npz, tmp_path):
    result = train(_config(tiny_npz, tmp_path / "run", epochs=2, device="cuda", bf16=True))
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in state.values())
    report = evaluate_checkpoint(result.checkpoint, tiny_npz, "val")
    assert report["accuracy"] == pytest.approx(result.card.metrics["val"]["accuracy"], abs=1e-3)


def test_early_stopping_stops(tiny_npz, tmp_path):
    result = train(_config(tiny_npz, tmp_path / "run", epochs=30, lr=1e-9, patience=2,
                           optimizer="sgd", schedule="constant"))
    assert len(result.history) < 30


def test_unknown_options_are_refused(tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig.from_recipe("cbam_cnn", tiny_npz, tmp_path, recipe_name="magic")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_recipe("cbam_cnn", tiny_npz, tmp_path, epochz=3)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(_config(tiny_npz, tmp_path / "x", optimizer="adagrad"))


def test_focal_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0]])
    p = torch.softmax(logits, 1)[0, 0]
    expected = -0.25 * (1 - p) ** 2 * torch.log(p)
    assert torch.allclose(FocalLoss(alpha=0.25, gamma=2.0)(logits, torch.tensor([0])), expected)
    assert torch.allclose(
        FocalLoss(alpha=1.0, gamma=0.0)(logits, torch.tensor([0])),
        torch.nn.functional.cross_entropy(logits, torch.tensor([0])),
    )


def test_augmentation_is_seeded_and_keeps_range():
    x = torch.rand(8, 3, 16, 16)
    first = augment(x, PRESETS["strong"], torch.Generator().manual_seed(3))
    second = augment(x, PRESETS["strong"], torch.Generator().manual_seed(3))
    assert torch.equal(first, second) and not torch.equal(first, x)
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    flipped = augment(x, PRESETS["flips"], torch.Generator().manual_seed(0))
    # dihedral transforms only move pixels: each image keeps its sorted values
    assert torch.allclose(flipped.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_absorbance_augmentation_scales_each_channels_optical_density_against_the_background():
    from edgehemo.train.augment import AugmentConfig

    x = torch.full((1, 3, 16, 16), 0.9)
    x[:, :, 4:8, 4:8] = torch.tensor([0.3, 0.45, 0.6]).view(1, 3, 1, 1)  # a stained spot
    config = AugmentConfig(dihedral=False, absorbance_p=1.0, absorbance_range=(0.5, 0.5))
    out = augment(x, config, torch.Generator().manual_seed(0))
    spot = 0.9 * (torch.tensor([0.3, 0.45, 0.6]) / 0.9) ** 0.5
    assert torch.allclose(out[0, :, 5, 5], spot, atol=1e-5)
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), 0.9))  # background unchanged
    # one factor per channel, drawn from the field_hue preset's range: the hue changes too
    config = AugmentConfig(dihedral=False, absorbance_p=1.0,
                           absorbance_range=PRESETS["field_hue"].absorbance_range)
    hued = augment(x.repeat(16, 1, 1, 1), config, torch.Generator().manual_seed(1))
    od = -torch.log(hued[:, :, 5, 5] / 0.9)
    ratios = od[:, 2] / od[:, 0]
    assert float(ratios.max() / ratios.min()) > 3
    assert PRESETS["field_hue"].absorbance_p > 0 and PRESETS["field"].absorbance_p == 0


def test_zoom_augmentation_changes_the_cells_size_by_the_drawn_factor():
    from edgehemo.train.augment import AugmentConfig

    x = torch.ones(1, 3, 64, 64)
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disk = ((rows - 31.5) ** 2 + (cols - 31.5) ** 2) < 10**2  # a dark cell, radius 10
    x[:, :, disk] = 0.2

    def area(factor: float) -> float:
        config = AugmentConfig(dihedral=False, affine_p=1.0, rotate_deg=0.0, translate=0.0,
                               zoom=(factor, factor))
        out = augment(x, config, torch.Generator().manual_seed(0))
        return float((out[0, 0] < 0.6).sum())

    assert area(1.5) / disk.sum().item() == pytest.approx(1.5**2, rel=0.08)
    assert area(0.7) / disk.sum().item() == pytest.approx(0.7**2, rel=0.08)
    # the preset's range spans a lymphocyte framed by another lab's tight box (~1.5x)
    low, high = PRESETS["field_zoom"].zoom
    assert low < 0.7 and high > 1.5

def test_the_cli_help_names_every_augmentation_preset():
    # the CLI must not import torch, so its --augment help lists the presets by hand
    import typing

    from edgehemo import cli

    option = typing.get_type_hints(cli.train, include_extras=True)["augment"].__metadata__[0]
    assert all(name in option.help for name in PRESETS)


def test_ema_warms_up_and_then_follows_the_decay():
    from edgehemo.train.loop import ema_with_warmup

    update = ema_with_warmup(0.99)
    average, value = [torch.zeros(1)], [torch.ones(1)]
    update(average, value, torch.tensor(1))  # decay (1+1)/(10+1) = 2/11
    assert float(average[0]) == pytest.approx(9 / 11)
    average = [torch.zeros(1)]
    update(average, value, torch.tensor(10_000))  # decay capped at 0.99
    assert float(average[0]) == pytest.approx(0.01)
    counter = [torch.tensor([3])]
    update(counter, [torch.tensor([7])], torch.tensor(5))
    assert int(counter[0]) == 7


def test_training_on_an_image_folder_without_splits_holds_out_validation(samples_dir, tmp_path):
    config = TrainConfig.from_recipe("cnn", samples_dir, tmp_path, epochs=1, batch_size=8,
                                     ema=0.0, augment="flips", threads=1)
    result = train(config)
    assert result.card.data["train_images"] == 24 and result.card.data["val_images"] == 8
    assert result.card.classes == tuple(sorted(p.name for p in samples_dir.iterdir()
                                               if p.is_dir()))


def test_finetune_adapts_shipped_weights_keeping_their_classes_and_preprocessing(
        samples_dir, tmp_path):
    from edgehemo.models import resolve_weights
    from edgehemo.train.loop import TrainConfig, train

    base = resolve_weights("cbam_cnn").card
    site = tmp_path / "site"
    for name in ("neutrophil", "lymphocyte"):  # a site with only some of the classes
        (site / name).mkdir(parents=True)
        for image in sorted((samples_dir / name).glob("*.jpg")):
            (site / name / image.name).write_bytes(image.read_bytes())
    config = TrainConfig.from_recipe("cbam_cnn", site, tmp_path / "run", recipe_name="finetune",
                                     finetune=True, epochs=1, threads=1)
    card = train(config).card
    assert card.classes == base.classes and card.preprocessing == base.preprocessing
    assert card.architecture == base.architecture == "cbam_cnn"
    assert card.data["finetuned_from"] == "cbam_cnn"
    assert card.training.recipe == "finetune"


def test_a_site_fine_tune_with_replay_trains_on_every_crop_and_keeps_its_last_epoch(
        samples_dir, tiny_npz, tmp_path, caplog):
    """A few dozen labelled crops per class are too few to hold some out for choosing an epoch:
    with replayed data, every site crop trains and the replay's validation split is watched."""
    import logging

    from edgehemo.train.loop import TrainConfig, train

    site = tmp_path / "site"
    for name in ("neutrophil", "lymphocyte", "monocyte"):
        (site / name).mkdir(parents=True)
        for image in sorted((samples_dir / name).glob("*.jpg")):
            (site / name / image.name).write_bytes(image.read_bytes())
    crops = len(list(site.rglob("*.jpg")))
    config = TrainConfig.from_recipe("cbam_cnn", site, tmp_path / "run", recipe_name="finetune",
                                     finetune=True, epochs=3, threads=1, replay=tiny_npz,
                                     replay_count=8)
    with caplog.at_level(logging.INFO, logger="edgehemo.train.loop"):
        card = train(config).card
    assert (f"fine-tuning on {crops} site images (+ replay: {crops + 8} in all), validating on 32 "
            "replayed images, keeping the last epoch") in caplog.text
    assert card.training.best_epoch == card.training.epochs_run == 3
    assert card.data["train_images"] == crops + 8
    assert card.data["epoch_kept"] == "last" and card.data["val_images"] == 32
    assert card.data["val_source"].endswith("tiny.npz:val")


def test_a_clinic_trains_hemonet_on_its_own_folders_with_one_command(samples_dir, tmp_path):
    """ALL/AML/MM folders (stand-ins cut from the shipped samples) -> `edgehemo train hemonet`
    -> `edgehemo evaluate` on the test split, through the CLI a clinic would use."""
    import json
    import subprocess
    import sys

    data = tmp_path / "clinic"
    sources = {"ALL": "lymphocyte", "AML": "monocyte", "MM": "neutrophil"}
    for name, source in sources.items():
        images = sorted((samples_dir / source).glob("*.jpg"))
        for split, chosen in (("train", images[:2]), ("val", images[2:3]), ("test", images[3:4])):
            (data / split / name).mkdir(parents=True)
            for image in chosen:
                (data / split / name / image.name).write_bytes(image.read_bytes())
    cli = [sys.executable, "-m", "edgehemo.cli"]
    run = tmp_path / "run"
    trained = subprocess.run([*cli, "train", "hemonet", "--data", str(data), "--out", str(run),
                              "--epochs", "1", "--batch-size", "3", "--threads", "1"],
                             capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    card = json.loads((run / "best.json").read_text())
    assert card["architecture"] == "hemonet" and card["classes"] == ["ALL", "AML", "MM"]
    assert card["preprocessing"]["input_size"] == 224
    report = subprocess.run([*cli, "evaluate", "--model", str(run / "best.pt"), "--data",
                             str(data), "--split", "test", "--json", "-"],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    metrics = json.loads(report.stdout)
    assert metrics["num_images"] == 3 and 0 <= metrics["accuracy"] <= 1


def test_a_cell_framed_training_records_its_framing_in_the_card(tiny_npz, tmp_path):
    result = train(_config(tiny_npz, tmp_path / "run", epochs=1, framing="cell"))
    card = read_card(tmp_path / "run" / "best.json")
    assert card.preprocessing.framing == "cell" and result.history


def test_the_card_names_stain_views_only_for_training_under_varied_stain_hues(tiny_npz, tmp_path):
    # stain views for a model that never saw another stain's colour: answers at chance
    train(_config(tiny_npz, tmp_path / "hue", epochs=1, augment="field_hue"))
    train(_config(tiny_npz, tmp_path / "plain", epochs=1, augment="strong"))
    assert read_card(tmp_path / "hue" / "best.json").preprocessing.test_views == "stain"
    assert read_card(tmp_path / "plain" / "best.json").preprocessing.test_views == "mirror"


def test_a_second_view_is_drawn_for_about_half_the_images(sample_set):
    dark = sample_set.subset(np.arange(len(sample_set)))
    dark.images[:] = 0
    bright = np.full_like(dark.images, 255)
    batches = TrainBatches(dark, PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1)), batch_size=32,
                           augment_config=PRESETS["none"],
                           generator=torch.Generator().manual_seed(0), second_view=bright)
    x, _ = next(iter(batches))
    from_second = (x.amax(dim=(1, 2, 3)) == 1.0).sum().item()
    assert 6 <= from_second <= 26  # Binomial(32, 0.5), not all from one view
    assert set(x.amax(dim=(1, 2, 3)).tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="second view"):
        TrainBatches(dark, PreprocessSpec(), batch_size=4, augment_config=PRESETS["none"],
                     generator=torch.Generator(), second_view=bright[:3])


def test_an_unknown_framing_is_refused(tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="framing"):
        train(_config(tiny_npz, tmp_path / "run", epochs=1, framing="middle"))
    with pytest.raises(ValueError, match=r"--mixstyle -0\.5: a probability"):
        train(_config(tiny_npz, tmp_path / "mixed", epochs=1, mixstyle=-0.5))
    assert not (tmp_path / "mixed").exists()  # refused before anything is written


def test_mixstyle_restyles_training_features_only_and_keeps_the_model_unchanged():
    from torch import nn

    from edgehemo.train.mixstyle import MixStyle, attach_mixstyle
    from edgehemo.train.registry import count_parameters, create_model

    # two "images" whose channels have other means and deviations: mixed, each lands between
    features = torch.stack([torch.randn(4, 8, 8) * 1 + 0, torch.randn(4, 8, 8) * 3 + 5])
    stage = nn.Identity()
    out = MixStyle(1.0, 0.1, np.random.default_rng(0))(stage, (features,), features)
    means, stds = features.mean((2, 3)), features.std((2, 3))
    new_means, new_stds = out.mean((2, 3)), out.std((2, 3))
    low, high = torch.minimum(means[0], means[1]), torch.maximum(means[0], means[1])
    assert bool(((new_means >= low - 1e-3) & (new_means <= high + 1e-3)).all())
    assert bool(((new_stds >= stds.min(0).values * 0.95) &
                 (new_stds <= stds.max(0).values * 1.05)).all())
    assert not torch.allclose(out, features)
    stage.eval()  # evaluation: the features pass untouched
    assert MixStyle(1.0, 0.1, np.random.default_rng(0))(stage, (features,), features) is features

    model = create_model("cbam_cnn")
    parameters = count_parameters(model)
    x = torch.randn(6, 3, 64, 64)
    model.eval()
    before = model(x)
    handles = attach_mixstyle(model, 1.0, seed=3)
    assert count_parameters(model) == parameters
    assert torch.equal(model(x), before)  # no effect at inference
    model.train()
    restyled = model.features[:2](x)
    again = create_model("cbam_cnn")
    again.load_state_dict(model.state_dict())
    attach_mixstyle(again.train(), 1.0, seed=3)
    assert torch.allclose(again.features[:2](x), restyled)  # same seed, same draws
    for handle in handles:
        handle.remove()
    assert not torch.allclose(model.features[:2](x), restyled)
    with pytest.raises(ValueError, match="features"):
        attach_mixstyle(nn.Linear(2, 2), 0.5, seed=0)
    with pytest.raises(ValueError, match="probability"):
        MixStyle(1.5, 0.1, np.random.default_rng(0))
