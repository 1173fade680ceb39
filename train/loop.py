"""The training loop: one function from a TrainConfig to a best checkpoint with its model card.

Writes into `out/`: `best.pt` (state dict of the best epoch by validation accuracy) and `best.json`
(its model card), `last.pt` (everything needed to resume), `history.csv` / `history.json` (one row
per epoch: loss, accuracy, lr, seconds) and `curves.png`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from edgehemo.cards import ModelCard, TrainingRecord, write_card
from edgehemo.datasets import ImageSet, align_classes, load_dataset
from edgehemo.errors import CheckpointError, DatasetError
from edgehemo.framing import reframe
from edgehemo.models import resolve_weights
from edgehemo.preprocess import FRAMINGS, PreprocessSpec, channel_statistics
from edgehemo.store.atomic import sha256_file, write_atomically
from edgehemo.train.augment import PRESETS, views_for_augmentation
from edgehemo.train.compact import expand_state
from edgehemo.train.data import TrainBatches, predict_probabilities
from edgehemo.train.evaluate import load_model
from edgehemo.train.losses import make_loss
from edgehemo.train.mixstyle import attach_mixstyle
from edgehemo.train.recipes import recipe
from edgehemo.train.registry import count_parameters, create_model, model_info

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on; recipes fill the defaults."""

    model: str
    data: Path
    out: Path
    recipe: str = "edgehemo"
    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.05
    schedule: str = "onecycle"
    gamma: float = 0.0
    loss: str = "ce"
    label_smoothing: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    augment: str = "strong"
    mixstyle: float = 0.0  # probability of MixStyle on the first two stages' features (0: off)
    ema: float = 0.998
    patience: int = 0
    seed: int = 0
    threads: int = 0
    crop_fraction: float | None = None
    input_size: int | None = None  # None: the architecture's registered size
    colour_norm: str = "none"
    framing: str = "centre"  # auto / cell: raw images framed around their cell (edgehemo.framing)
    finetune: bool = False  # `model` names trained weights to adapt, not an architecture
    replay: Path | None = None  # original training data mixed in while fine-tuning
    replay_count: int = 2000
    pretrained: Path | None = None  # a local state dict (e.g. ImageNet backbone weights)
    limit: int = 0
    bf16: bool = False
    device: str = "cpu"  # torch device to train on, e.g. "cuda"; the checkpoint is saved for CPU
    time_budget: float = 0.0  # minutes; >0 shortens the run (and its schedule) to fit
    resume: bool = False
    name: str = ""

    @classmethod
    def from_recipe(cls, model: str, data: Path, out: Path, *, recipe_name: str = "edgehemo",
                    **overrides: Any) -> TrainConfig:
        """Recipe defaults, then every override that is not None."""
        values: dict[str, Any] = recipe(recipe_name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(model=model, data=Path(data), out=Path(out), recipe=recipe_name, **values)

    def hyperparameters(self) -> dict[str, Any]:
        skip = {"model", "data", "out", "resume", "name", "threads", "limit", "replay",
                "pretrained", "device"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    checkpoint: Path
    card: ModelCard
    history: list[EpochRecord]


ProgressCallback = Callable[[str, int, int], None]


def _stratified_holdout(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(data.labels):
        members = rng.permutation(np.flatnonzero(data.labels == label))
        held.extend(members[: max(1, round(fraction * len(members)))].tolist())
    mask = np.zeros(len(data), dtype=bool)
    mask[held] = True
    return data.subset(np.flatnonzero(~mask)), data.subset(np.flatnonzero(mask))


def _has_val_split(path: Path) -> bool:
    if path.is_dir():
        return (path / "val").is_dir()
    return True


def load_finetune_data(config: TrainConfig, card: ModelCard
                       ) -> tuple[ImageSet, ImageSet, PreprocessSpec]:
    """A site's labelled crops in the base model's class order and preprocessing (unchanged, so
    the adapted model is fed exactly like the original), plus replayed original training data."""
    spec = card.preprocessing
    site = align_classes(load_dataset(config.data, "train", spec), card.classes)
    if _has_val_split(config.data):
        val = align_classes(load_dataset(config.data, "val", spec), card.classes)
        train = site
    elif _validates_on_replay(config):
        # A few dozen crops per class are too few to give some up for choosing an epoch: all of
        # them train, the replayed data's validation split watches for forgetting, and the
        # fixed schedule's last epoch is kept.
        assert config.replay is not None
        train = site
        val = align_classes(load_dataset(config.replay, "val", spec), card.classes)
    else:
        train, val = _stratified_holdout(site, 0.2, config.seed)
    site_count = len(train)
    if config.replay is not None:
        original = align_classes(load_dataset(config.replay, "train", spec), card.classes)
        rng = np.random.default_rng(config.seed)
        chosen = np.sort(rng.permutation(len(original))[: config.replay_count])
        replay = original.subset(chosen)
        train = ImageSet(np.concatenate([train.images, replay.images]),
                         np.concatenate([train.labels, replay.labels]), card.classes,
                         (), f"{site.source} + {len(replay)} replayed from {original.source}")
    logger.info("fine-tuning on %d site images (+ replay: %d in all), validating on %d%s",
                site_count, len(train), len(val),
                " replayed images, keeping the last epoch" if _validates_on_replay(config) else "")
    return train, val, spec


def _validates_on_replay(config: TrainConfig) -> bool:
    """A fine-tune on a site folder without val/, with replayed data that has a val split."""
    return (config.finetune and not _has_val_split(config.data) and config.replay is not None
            and _has_val_split(config.replay))


def load_training_data(config: TrainConfig) -> tuple[ImageSet, ImageSet, PreprocessSpec]:
    """Train and validation sets, and the preprocessing spec with the train set's statistics."""
    info = model_info(config.model)
    base = PreprocessSpec(input_size=config.input_size or info.input_size,
                          colour_norm=config.colour_norm, framing=config.framing)
    if config.crop_fraction is not None:
        base = base.model_copy(update={"crop_fraction": config.crop_fraction})
    train = load_dataset(config.data, "train", base)
    if _has_val_split(config.data):
        val = load_dataset(config.data, "val", base)
        if val.classes != train.classes:
            raise DatasetError(
                f"{config.data}: val classes {list(val.classes)} differ from train "
                f"classes {list(train.classes)}"
            )
    else:
        train, val = _stratified_holdout(train, 0.1, config.seed)
        logger.info("no val/ split: holding out %d training images for validation", len(val))
    if config.limit:
        rng = np.random.default_rng(config.seed)
        train = train.subset(np.sort(rng.permutation(len(train))[: config.limit]))
        val = val.subset(np.sort(rng.permutation(len(val))[: max(1, config.limit // 4)]))
    mean, std = channel_statistics(train.images)
    spec = base.model_copy(update={"mean": mean, "std": std,
                                   "test_views": views_for_augmentation(config.augment)})
    return train, val, spec


def ema_with_warmup(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor],
                                                   torch.Tensor], None]:
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)).

    Without the ramp the average keeps a large share of the random initial weights (and of the
    initial BatchNorm statistics) for thousands of steps, and scores at chance early in training.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        for average, value in zip(averaged, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, weight)
            else:
                average.copy_(value)

    return update


def _cell_framed_view(config: TrainConfig, spec: PreprocessSpec,
                      train_set: ImageSet) -> np.ndarray | None:
    """With cell framing, an npz's crops (framed by their maker) are also shown cell-framed, so
    the model learns both; an ImageFolder's raw images are already cell-framed on loading."""
    if spec.framing != "cell" or config.finetune or config.data.suffix != ".npz":
        return None
    return reframe(train_set.images)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected adam, adamw or sgd")


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    if config.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.gamma or 0.5, patience=3
        )
    if config.schedule in ("constant", "mutation"):
        return None
    raise ValueError(
        f"unknown schedule {config.schedule!r}; expected onecycle, exponential, cosine, "
        "plateau, mutation or constant"
    )


def planned_epochs(config: TrainConfig, seconds_per_epoch: float, *, elapsed: float = 0.0,
                   epochs_done: int = 0) -> int:
    """How many of `config.epochs` fit in the time budget: `epochs_done` already took `elapsed`
    seconds, the rest take `seconds_per_epoch` each (at least one epoch in all)."""
    if config.time_budget <= 0:
        return config.epochs
    left = config.time_budget * 60.0 - elapsed
    fitting = epochs_done + int(max(left, 0.0) // max(seconds_per_epoch, 1e-9))
    return max(1, min(config.epochs, fitting))


def _fast_forwarded_onecycle(config: TrainConfig, optimizer: torch.optim.Optimizer,
                             steps_per_epoch: int, epochs: int, steps_done: int) -> Any:
    """A one-cycle schedule over `epochs` instead of config.epochs, advanced to `steps_done`."""
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=epochs, steps_per_epoch=steps_per_epoch
    )
    with warnings.catch_warnings():  # stepping before optimizer.step() is intended here
        warnings.simplefilter("ignore")
        for _ in range(steps_done):
            schedule.step()
    return schedule


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def _save_torch_atomically(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomically(path, buffer.getvalue())


def _evaluate(model: nn.Module, data: ImageSet, spec: PreprocessSpec,
              loss_fn: nn.Module, device: torch.device) -> tuple[float, float]:
    probs = predict_probabilities(model, data, spec, device=device)
    labels = torch.from_numpy(data.labels)
    loss = float(loss_fn(torch.from_numpy(np.log(np.clip(probs, 1e-12, 1.0))), labels))
    return loss, float((probs.argmax(1) == data.labels).mean())


def _write_history(out: Path, history: list[EpochRecord]) -> None:
    rows = [asdict(r) for r in history]
    write_atomically(out / "history.json", (json.dumps(rows, indent=1) + "\n").encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(out / "history.csv", text.getvalue().encode())


def load_pretrained(model: nn.Module, path: Path) -> list[str]:
    """Load the tensors of a local state dict whose names and shapes fit `model` (a backbone's
    weights into a model with a new head); returns the loaded names. Refuses a file that fits
    nothing."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path}: cannot be read as a state dict ({error})") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if isinstance(state, dict):
        state = expand_state(state)  # shipped compact checkpoints (e.g. hemonet.pt)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items()
               if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not fitting:
        raise CheckpointError(f"{path}: none of its {len(state)} tensors fits this model "
                              "(names and shapes must follow edgehemo's layout)")
    model.load_state_dict(fitting, strict=False)
    logger.info("loaded %d of %d tensors from %s (%d of the model's left as initialised)",
                len(fitting), len(state), path, len(own) - len(fitting))
    return sorted(fitting)


def train(config: TrainConfig, progress: ProgressCallback | None = None) -> TrainResult:
    """Train `config.model` on `config.data`; return the best checkpoint and its card."""
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        device = torch.device(config.device)
    except RuntimeError as error:
        raise ValueError(f"--device {config.device!r} is not a torch device "
                         "(e.g. cpu, cuda, cuda:1)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {config.device}: this torch build sees no CUDA GPU "
                         f"(torch {torch.__version__}); train with --device cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if config.time_budget < 0:
        raise ValueError(f"--time-budget {config.time_budget}: minutes must be positive "
                         "(0: no budget)")
    if config.framing not in FRAMINGS:
        raise ValueError(f"unknown framing {config.framing!r}; expected {', '.join(FRAMINGS)}")
    if config.augment not in PRESETS:
        raise ValueError(f"unknown augmentation {config.augment!r}; expected {', '.join(PRESETS)}")
    if not 0 <= config.mixstyle <= 1:
        raise ValueError(f"--mixstyle {config.mixstyle}: a probability, within 0..1")
    torch.manual_seed(config.seed)
    base_weights = resolve_weights(config.model) if config.finetune else None
    if base_weights is not None:
        train_set, val_set, spec = load_finetune_data(config, base_weights.card)
        architecture = base_weights.card.architecture
    else:
        train_set, val_set, spec = load_training_data(config)
        architecture = config.model
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    if base_weights is not None:
        model = load_model(base_weights.checkpoint, base_weights.card)
    else:
        model = create_model(config.model, num_classes=len(train_set.classes),
                             input_size=spec.input_size)
        if config.pretrained is not None:
            load_pretrained(model, config.pretrained)
    # channels_last is ~30% faster for these convolutions on CPU and changes no result.
    model = model.to(device=device, memory_format=torch.channels_last)
    if config.mixstyle > 0:
        attach_mixstyle(model, config.mixstyle, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    batches = TrainBatches(train_set, spec, batch_size=config.batch_size,
                           augment_config=PRESETS[config.augment], generator=generator,
                           second_view=_cell_framed_view(config, spec, train_set))
    optimizer = _optimizer(config, model)
    scheduler = _scheduler(config, optimizer, len(batches))
    loss_fn = make_loss(config.loss, label_smoothing=config.label_smoothing,
                        alpha=config.focal_alpha, gamma=config.focal_gamma)
    ema = (AveragedModel(model, multi_avg_fn=ema_with_warmup(config.ema), use_buffers=True)
           if config.ema > 0 else None)

    history: list[EpochRecord] = []
    best_accuracy, best_epoch, start_epoch = -1.0, 0, 1
    keep_last = _validates_on_replay(config)
    epochs = config.epochs  # shortened once if a time budget cannot hold them all
    last_path = out / "last.pt"
    if config.resume and last_path.is_file():
        state = torch.load(last_path, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        # The saved one-cycle state already holds a shortened schedule's length.
        epochs = min(config.epochs, state.get("shortened_to") or config.epochs)
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        history = [EpochRecord(**row) for row in json.loads(state["history"])]
        best_accuracy, best_epoch = state["best_accuracy"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        logger.info("resumed from %s at epoch %d", last_path, start_epoch)

    started = time.perf_counter() - sum(r.seconds for r in history)
    epoch = start_epoch
    while epoch <= epochs:
        epoch_start = time.perf_counter()
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for step, (x, y) in enumerate(batches, start=1):
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            if config.schedule == "onecycle":
                scheduler.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            if progress:
                progress(f"epoch {epoch}/{epochs}", step, len(batches))
        lr = optimizer.param_groups[0]["lr"]
        scored = ema.module if ema is not None else model
        val_loss, val_accuracy = _evaluate(scored, val_set, spec, loss_fn, device)
        improved = val_accuracy > best_accuracy or keep_last
        if config.schedule in ("exponential", "cosine"):
            scheduler.step()
        elif config.schedule == "plateau":
            scheduler.step(val_accuracy)
        elif config.schedule == "mutation" and not improved:
            for group in optimizer.param_groups:
                group["lr"] *= config.gamma
        record = EpochRecord(epoch, loss_sum / seen, correct / seen, val_loss, val_accuracy, lr,
                             time.perf_counter() - epoch_start)
        history.append(record)
        logger.info("epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.2e | %.1fs",
                    *asdict(record).values())
        if improved:
            best_accuracy, best_epoch = val_accuracy, epoch
            _save_torch_atomically(_cpu_state(scored.state_dict()), out / "best.pt")
        _save_torch_atomically(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "ema": ema.state_dict() if ema is not None else {},
                "generator": generator.get_state(),
                "history": json.dumps([asdict(r) for r in history]),
                "best_accuracy": best_accuracy,
                "best_epoch": best_epoch,
                "epoch": epoch,
                "shortened_to": epochs if epochs < config.epochs else None,
            },
            last_path,
        )
        _write_history(out, history)
        if config.patience and epoch - best_epoch >= config.patience:
            logger.info("early stopping: no improvement for %d epochs", config.patience)
            break
        spent = time.perf_counter() - started
        if config.time_budget > 0 and spent + record.seconds > config.time_budget * 60.0:
            logger.info("time budget %.1f min spent after epoch %d", config.time_budget, epoch)
            break
        # Planned from the second epoch on (the first carries one-off costs: cuDNN autotuning,
        # warm-up, sibling runs starting on the same machine) and re-planned whenever epochs slow
        # down (e.g. a sibling run starts), so the one-cycle schedule still anneals before the end.
        if config.time_budget > 0 and epoch > start_epoch:
            pace = float(np.mean([r.seconds for r in history[-2:]])) \
                if epoch > start_epoch + 1 else record.seconds
            fitting = planned_epochs(config, pace, elapsed=spent, epochs_done=epoch)
            if fitting < epochs:
                logger.info("time budget %.1f min at %.1f s/epoch: %d epochs instead of %d",
                            config.time_budget, pace, fitting, epochs)
                if config.schedule == "onecycle":
                    scheduler = _fast_forwarded_onecycle(config, optimizer, len(batches),
                                                         fitting, epoch * len(batches))
                epochs = fitting
        epoch += 1

    elapsed = time.perf_counter() - started
    checkpoint = out / "best.pt"
    card = ModelCard(
        name=config.name or (base_weights.card.name if base_weights else config.model),
        architecture=architecture,
        classes=train_set.classes,
        input_size=spec.input_size,
        preprocessing=spec,
        num_params=count_parameters(model),
        checkpoint_sha256=sha256_file(checkpoint),
        checkpoint_bytes=checkpoint.stat().st_size,
        data={"source": str(config.data), "train_images": len(train_set),
              "val_images": len(val_set),
              **({"val_source": val_set.source, "epoch_kept": "last"} if keep_last else {}),
              **({"finetuned_from": base_weights.name,
                  "finetuned_from_sha256": base_weights.card.checkpoint_sha256}
                 if base_weights else {})},
        training=TrainingRecord(
            recipe=config.recipe,
            hyperparameters=config.hyperparameters(),
            seed=config.seed,
            epochs_run=len(history),
            best_epoch=best_epoch,
            seconds=round(elapsed, 1),
            seconds_per_epoch=round(elapsed / max(1, len(history)), 1),
            torch_version=torch.__version__,
            threads=torch.get_num_threads(),
        ),
        metrics={"val": {"accuracy": round(best_accuracy, 5)}},
    )
    write_card(card, out / "best.json")
    _plot_curves(out, history)
    return TrainResult(checkpoint, card, history)


def _plot_curves(out: Path, history: list[EpochRecord]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no curves.png")
        return
    epochs = [r.epoch for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r.train_loss for r in history], label="train")
    ax_loss.plot(epochs, [r.val_loss for r in history], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [r.train_accuracy for r in history], label="train")
    ax_acc.plot(epochs, [r.val_accuracy for r in history], label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for axis in (ax_loss, ax_acc):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
