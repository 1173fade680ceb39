"""The `edgehemo` command line. Thin: each command parses its options and calls one function.

Stages are imported inside the commands, so `edgehemo --help` and the device commands start
without importing torch.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, cast, get_args

import typer
from rich.console import Console
from rich.markup import escape

from edgehemo import __version__
from edgehemo.cli_capture import (
    capture,
    export_reviewed,
    report,
    results,
    review,
    service_app,
    status,
)
from edgehemo.errors import EdgehemoError

app = typer.Typer(
    name="edgehemo",
    help="Blood-cell screening on the microscope's computer. A screening aid that a qualified "
    "person confirms, never a diagnosis.",
    no_args_is_help=True,
    add_completion=False,
    # docstrings and help reflow to the terminal's width (as Markdown: `code`, no raw <tags>)
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _backend_settings(threads: int, options: list[str] | None) -> dict[str, object]:
    """--threads plus repeated --backend-option KEY=VALUE, validated later by the backend."""
    settings: dict[str, object] = {"threads": threads}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ValueError(f"--backend-option expects KEY=VALUE, got {option!r}")
        settings[key.strip().replace("-", "_")] = value.strip()
    return settings


BackendOptions = Annotated[
    list[str] | None,
    typer.Option("--backend-option", help="Backend setting KEY=VALUE, e.g. device=usb:1 "
                 "(edgetpu) or engine_cache=/path (gpu); repeatable."),
]
Views = Annotated[
    str | None,
    typer.Option("--views", help="Test-time views averaged per image (default auto; one view, "
                 "none, with evaluate --write-card): auto (those the model's "
                 "manifest names: stain for the shipped cbam_cnn models, mirror for the others), "
                 "stain (eight stain hues, each turned by a mirror image: 8 runs; steadier on "
                 "another lab's stain, only for models trained under varied hues), mirror (the "
                 "image and its mirror images: 4 runs) or none (one run)."),
]
StainTTA = Annotated[
    bool, typer.Option("--stain-tta", help="Short for --views stain."),
]
MirrorTTA = Annotated[
    bool, typer.Option("--tta", help="Short for --views mirror."),
]


def _views(views: str | None, mirror: bool, stain: bool, default: str) -> str:
    """The test-time views (edgehemo.views) that --views, --tta or --stain-tta ask for; the
    command's `default` where none is given."""
    given = [name for name, asked in (("--views", views is not None), ("--tta", mirror),
                                      ("--stain-tta", stain)) if asked]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)}: give one (--tta is --views mirror, --stain-tta "
                         "--views stain)")
    return views if views is not None else "stain" if stain else "mirror" if mirror else default


def _version(value: bool) -> None:
    if value:
        print(f"edgehemo {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="Architecture, e.g. cbam_cnn (see `models`).")],
    data: Annotated[Path, typer.Option(help="MedMNIST-layout .npz or ImageFolder directory.")],
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints and logs.")] = Path(
        "runs/train"
    ),
    recipe: Annotated[
        str | None,
        typer.Option(help="Defaults: edgehemo, paper-adam, hemonet-sgd, plateau, finetune "
                     "(default: edgehemo, or finetune with --finetune)."),
    ] = None,
    finetune: Annotated[
        bool, typer.Option("--finetune", help="MODEL names trained weights (shipped name or "
                           "best.pt) to adapt to --data, e.g. a site's reviewed crops.")
    ] = False,
    replay: Annotated[
        Path | None, typer.Option(help="With --finetune: original training data to mix in, so "
                                  "the model does not forget it. A site folder without val/ "
                                  "then trains on every crop, this data's val split is watched "
                                  "for forgetting, and the last epoch is kept.")
    ] = None,
    replay_count: Annotated[int, typer.Option(help="Replayed images.")] = 2000,
    pretrained: Annotated[
        Path | None, typer.Option(help="Local state dict to start from (e.g. ImageNet backbone "
                                  "weights in edgehemo's layout); nothing is downloaded.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="(Peak) learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam, adamw or sgd.")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay.")] = None,
    schedule: Annotated[
        str | None,
        typer.Option(help="onecycle, exponential, cosine, plateau, mutation or constant."),
    ] = None,
    gamma: Annotated[
        float | None, typer.Option(help="Schedule factor (decay or mutation).")
    ] = None,
    loss: Annotated[str | None, typer.Option(help="ce or focal.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing (ce).")] = None,
    focal_alpha: Annotated[float | None, typer.Option(help="Focal loss alpha.")] = None,
    focal_gamma: Annotated[float | None, typer.Option(help="Focal loss gamma.")] = None,
    augment: Annotated[
        str | None,
        typer.Option(help="none, flips, paper, strong, hemonet, field (other microscopes), "
                     "field_hue (field, plus stains of another colour) or field_zoom "
                     "(field_hue, plus a much wider range of cell sizes)."),
    ] = None,
    mixstyle: Annotated[
        float | None, typer.Option(help="Probability per batch of MixStyle on the first two "
                                   "stages (feature statistics mixed between images; training "
                                   "only, the model is unchanged; 0: off).")
    ] = None,
    ema: Annotated[float | None, typer.Option(help="EMA decay of the weights (0: off).")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping patience (0: off).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights, order and augmentation.")] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads (0: torch's default).")] = 0,
    crop_fraction: Annotated[
        float | None, typer.Option(help="Centre crop of raw images, fraction of shorter side.")
    ] = None,
    input_size: Annotated[
        int | None, typer.Option(help="Input side in pixels (default: the architecture's, "
                                 "e.g. 224 for hemonet); e.g. 64 to train a large model on the "
                                 "64x64 crops.")
    ] = None,
    colour_norm: Annotated[
        str, typer.Option(help="none, or per_image (standardise each image's colours; for "
                          "cameras and stains unlike the training data).")
    ] = "none",
    framing: Annotated[
        str, typer.Option(help="How raw images are framed: centre (PBC's centre square), auto "
                          "(that square unless the crop is clearly cut otherwise: tight or "
                          "off-centre), cell (always around the white cell; npz crops are "
                          "then also seen that way half the time, so the model takes crops of "
                          "any framing), or ruler (the training window in red-cell diameters "
                          "where the image's red cells give the magnification, else auto).")
    ] = "centre",
    bf16: Annotated[
        bool, typer.Option(help="bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX).")
    ] = False,
    limit: Annotated[
        int, typer.Option(help="Use only N training images (smoke runs, or a time-boxed run of "
                          "a large model).")
    ] = 0,
    device: Annotated[
        str, typer.Option(help="Torch device to train on: cpu, or cuda (a GPU machine); the "
                          "checkpoint is saved for CPU either way.")
    ] = "cpu",
    time_budget: Annotated[
        float, typer.Option(help="Minutes the run may take: from the second epoch on, the number "
                            "of epochs (and the one-cycle schedule) is cut to fit, again if epochs "
                            "slow down, and no epoch starts that would overrun (0: off).")
    ] = 0.0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")] = False,
    name: Annotated[str, typer.Option(help="Name recorded in the model card.")] = "",
) -> None:
    """Train an architecture (or adapt trained weights with --finetune); writes best.pt +
    best.json (model card), history, curves."""
    from edgehemo.train.loop import TrainConfig
    from edgehemo.train.loop import train as run_training
    from edgehemo.train.progress import progress_bar

    config = TrainConfig.from_recipe(
        model, data, out, recipe_name=recipe or ("finetune" if finetune else "edgehemo"),
        finetune=finetune, replay=replay, replay_count=replay_count, pretrained=pretrained,
        epochs=epochs,
        batch_size=batch_size, lr=lr,
        optimizer=optimizer, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
        gamma=gamma, loss=loss, label_smoothing=label_smoothing, focal_alpha=focal_alpha,
        focal_gamma=focal_gamma, augment=augment, mixstyle=mixstyle, ema=ema,
        patience=patience, seed=seed,
        threads=threads, crop_fraction=crop_fraction, input_size=input_size,
        colour_norm=colour_norm, framing=framing, bf16=bf16, device=device,
        time_budget=time_budget,
        limit=limit, resume=resume,
        name=name,
    )
    with progress_bar(console) as progress:
        result = run_training(config, progress)
    best = result.card.metrics["val"]["accuracy"]
    assert result.card.training is not None
    console.print(
        f"best val accuracy {best:.4f} at epoch {result.card.training.best_epoch}; "
        f"{result.card.training.seconds_per_epoch:.1f} s/epoch; checkpoint {result.checkpoint}",
        markup=False,
    )


@app.command()
def adapt(
    model: Annotated[str, typer.Argument(help="Shipped weights name or checkpoint .pt path.")],
    data: Annotated[
        Path, typer.Option(help="Unlabelled images of the new microscope (any folder layout), "
                           "e.g. a capture session's crops directory.")
    ],
    out: Annotated[Path, typer.Option(help="Run directory for best.pt + best.json.")] = Path(
        "runs/adapted"),
    method: Annotated[
        str, typer.Option(help="batchnorm: re-estimate the BatchNorm statistics from the "
                          "images (no weight changes, seconds); self-train: fine-tune on the "
                          "model's own confident answers for them, the training data replayed "
                          "(--replay; minutes).")
    ] = "batchnorm",
    count: Annotated[int, typer.Option(help="Images used (a random sample; default 512 for "
                                       "batchnorm, 2000 for self-train).")] = 0,
    replay: Annotated[
        Path | None, typer.Option(help="self-train: the original training data (npz or "
                                  "ImageFolder), mixed in and its validation split watched.")
    ] = None,
    confidence: Annotated[
        float | None, typer.Option(help="self-train: the least confidence an answer needs to "
                                   "be learned (default 0.6, capture's low-confidence "
                                   "threshold).")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="self-train: the only answers allowed, as for classify "
                                 "(default nucleated_cells: no platelet, as capture answers "
                                 "the cells it cuts).")
    ] = None,
    seed: Annotated[int, typer.Option(help="self-train: fine-tuning seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="self-train: fine-tuning epochs (0: the "
                                        "finetune recipe's 15).")] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads (0: torch's default).")] = 0,
    name: Annotated[str, typer.Option(help="Name recorded in the model card.")] = "",
) -> None:
    """Adapt a model to a new microscope without labels: re-estimate its BatchNorm statistics
    from the site's own images, or self-train on its confident answers for them (export the
    result as usual)."""
    if method == "batchnorm":
        from edgehemo.train.adapt import adapt_checkpoint

        self_train_only = {"--replay": replay, "--confidence": confidence, "--classes": classes,
                           "--seed": seed or None, "--epochs": epochs or None}
        given = [option for option, value in self_train_only.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for --method self-train (batchnorm "
                             "re-estimates statistics, it trains nothing)")
        checkpoint, card = adapt_checkpoint(model, data, out, limit=count or 512,
                                            threads=threads, name=name)
        adapted = card.data["batchnorm_adapted"]
        console.print(f"wrote {checkpoint}: {adapted['layers']} BatchNorm layers re-estimated "
                      f"from {adapted['images']} images of {data}"
                      + (f" ({adapted['skipped']} unreadable skipped)" if adapted["skipped"]
                         else ""), markup=False)
    elif method == "self-train":
        from edgehemo.train.selftrain import self_train_checkpoint

        if replay is None:
            raise ValueError("--method self-train needs --replay DATA (the original training "
                             "data), or the model forgets the classes the site's crops lack")
        chosen = {"confidence": confidence, "classes": classes}
        checkpoint, card = self_train_checkpoint(
            model, data, out, replay, limit=count or 2000, seed=seed, threads=threads,
            epochs=epochs or None, name=name,
            **{key: value for key, value in chosen.items() if value is not None})
        record = card.data["self_trained"]
        console.print(f"wrote {checkpoint}: fine-tuned on {record['kept']} of "
                      f"{record['images']} images of {data} answered with at least "
                      f"{record['confidence']:.0%} confidence ("
                      + ", ".join(f"{k} {v}" for k, v in record["counts"].items()) + ")",
                      markup=False)
    else:
        raise ValueError(f"unknown --method {method!r}: batchnorm or self-train")
    console.print(f"next: edgehemo evaluate --model {checkpoint} --data LABELLED_SITE_IMAGES, "
                  f"then edgehemo export {checkpoint} ...", markup=False)


@app.command()
def evaluate(
    model: Annotated[
        str, typer.Option(help="Shipped weights name (e.g. cbam_cnn) or a checkpoint .pt path.")
    ],
    data: Annotated[Path, typer.Option(help="MedMNIST-layout .npz or ImageFolder directory.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the metrics as JSON here ('-': stdout).")
    ] = None,
    confusion_png: Annotated[
        Path | None, typer.Option(help="Write the confusion matrix as PNG here.")
    ] = None,
    write_card: Annotated[
        bool, typer.Option(help="Record the metrics in the checkpoint's model card.")
    ] = False,
    backend: Annotated[
        str, typer.Option(help="Backend for exported models: cpu, tflite, edgetpu, gpu.")
    ] = "cpu",
    threads: Annotated[int, typer.Option(help="Runtime threads (0: runtime's default).")] = 0,
    backend_option: BackendOptions = None,
    classes: Annotated[
        str | None, typer.Option(help="The only classes an answer may name, as for classify "
                                 "(comma-separated, white_cells or nucleated_cells).")
    ] = None,
    views: Views = None,
    tta: MirrorTTA = False,
    stain_tta: StainTTA = False,
    each_image: Annotated[
        bool, typer.Option("--each-image", help="An ImageFolder split's images come from "
                           "different microscopes: frame each at its own magnification, not "
                           "the one measured over the split.")
    ] = False,
) -> None:
    """Accuracy, F1, per-class precision/recall/sensitivity/specificity, confusion matrix.

    Exported models (e.g. cbam_cnn_int8) run through the device runtime, without torch. The
    answers are averaged over the model's own test-time views, as classify and capture average
    them; --views none measures the model alone (what --write-card records).
    """
    from edgehemo.metrics import format_report, plot_confusion_matrix
    from edgehemo.models import is_artifact_name

    # what classify and capture answer; a card records the model's own figures (one view)
    default_views = "none" if write_card else "auto"

    if is_artifact_name(model):
        from edgehemo.device.evaluate import evaluate_artifact

        if write_card:
            raise ValueError("--write-card applies to torch checkpoints, not exported models")
        report = evaluate_artifact(model, data, split, backend=backend,
                                   settings=_backend_settings(threads, backend_option),
                                   classes=classes,
                                   tta=_views(views, tta, stain_tta, default_views),
                                   one_microscope=not each_image)
        if confusion_png is not None:
            plot_confusion_matrix(report, confusion_png, title=f"{model} on {split}")
    else:
        from edgehemo.train.evaluate import evaluate_checkpoint

        report = evaluate_checkpoint(model, data, split, confusion_png=confusion_png,
                                     record_in_card=write_card, classes=classes,
                                     tta=_views(views, tta, stain_tta, default_views),
                                     one_microscope=not each_image)
    if json_out is not None:
        text = json.dumps(report, indent=2) + "\n"
        if str(json_out) == "-":
            sys.stdout.write(text)
            return
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text)
    print(format_report(report))
    if report.get("class_folders"):
        console.print(escape("classes read as: " + ", ".join(
            f"{name} -> {found}" for name, found in report["class_folders"].items())))
    if report.get("magnification"):
        from edgehemo.sitescale import SiteScale

        console.print(escape(SiteScale(**report["magnification"]).describe()))


@app.command()
def explain(
    model: Annotated[str, typer.Argument(help="Trained weights: shipped name or best.pt.")],
    images: Annotated[list[Path], typer.Argument(help="Cell images.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNGs.")] = Path("explain"),
) -> None:
    """Grad-CAM, attention maps and feature maps before/after attention, one PNG per image."""
    from edgehemo.models import resolve_weights
    from edgehemo.train.evaluate import load_model
    from edgehemo.train.explain import explain_files

    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    weights = resolve_weights(model)
    written = explain_files(load_model(weights.checkpoint, weights.card), weights.card, images,
                            out)
    for path in written:
        print(path)


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Shipped weights name or checkpoint .pt path.")],
    formats: Annotated[
        str, typer.Option(help="Comma-separated: onnx, onnx-int8, tflite, tflite-int8.")
    ] = "onnx,onnx-int8",
    calibration: Annotated[
        Path | None, typer.Option(help="Real images for int8 calibration (train split is used).")
    ] = None,
    calibration_count: Annotated[int, typer.Option(help="Calibration images.")] = 512,
    eval_data: Annotated[
        Path | None,
        typer.Option(help="Data whose test split is measured (default: the calibration data)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("exported"),
    takes: Annotated[
        str, typer.Option(help="What capture feeds the model: cell_crop (cells the cell finder "
                          "cuts) or whole_frame (each field of view, e.g. HemoNet trained on "
                          "whole-field ALL/AML/MM images).")
    ] = "cell_crop",
    bias_correction: Annotated[
        bool, typer.Option(help="Correct each int8 layer's bias on the calibration images so "
                           "that its mean output matches fp32 (docs/export.md).")
    ] = True,
) -> None:
    """Export to ONNX and TFLite (fp32, int8) with manifests; measures each through the
    device runtime: accuracy, agreement with fp32, torch parity."""
    from rich.table import Table

    from edgehemo.export.pipeline import export_model, parse_formats
    from edgehemo.manifest import Takes

    if takes not in get_args(Takes):
        raise typer.BadParameter(f"--takes must be one of {', '.join(get_args(Takes))}, "
                                 f"not {takes!r}")
    rows = export_model(
        model, formats=parse_formats(formats), calibration=calibration,
        calibration_count=calibration_count, eval_data=eval_data or calibration, out=out,
        takes=cast(Takes, takes), bias_correction=bias_correction,
        progress=lambda message: console.print(f"[dim]{escape(message)}[/dim]"),
    )
    table = Table(title=f"export of {model}")
    for column in ("format", "name", "status", "size MB", "test acc", "agreement w/ fp32",
                   "int8 parity"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.format, row.name, row.status, f"{row.megabytes:.2f}",
            f"{row.accuracy:.4f}" if row.accuracy is not None else "-",
            f"{row.agreement:.4f}" if row.agreement is not None else "-",
            row.parity if row.parity in ("-", "met") else f"[yellow]{row.parity}[/yellow]",
        )
    Console().print(table)
    if any(row.status != "passed" for row in rows):
        raise typer.Exit(1)


@app.command()
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Images or folders (walked recursively).")],
    model: Annotated[str, typer.Option(help="Exported model name or file.")] = "cbam_cnn_int8",
    backend: Annotated[
        str, typer.Option(help="Inference backend: cpu, tflite, edgetpu, gpu.")
    ] = "cpu",
    threads: Annotated[int, typer.Option(help="Runtime threads (0: runtime's default).")] = 0,
    backend_option: BackendOptions = None,
    top_k: Annotated[int, typer.Option(help="How many classes to list per image.")] = 3,
    red_cell_px: Annotated[
        float | None, typer.Option(help="The images' red-cell diameter in pixels, if known for "
                                   "this microscope (e.g. a capture session's red_cell_px): "
                                   "cells are framed at the training magnification even in "
                                   "crops without lone red cells (ruler framing). Not given, "
                                   "it is measured over all the given images: their lone red "
                                   "cells, or where too few show (tight crops) their white "
                                   "cells' nuclei.")
    ] = None,
    each_image: Annotated[
        bool, typer.Option("--each-image", help="The images come from different microscopes: "
                           "measure each one's magnification on its own, not once over all.")
    ] = False,
    classes: Annotated[
        str | None, typer.Option(help="The only classes an answer may name, comma-separated, "
                                 "white_cells (the crops are known to be white cells: no "
                                 "platelet or nucleated red cell) or nucleated_cells (no "
                                 "platelet); probabilities are renormalised over them.")
    ] = None,
    views: Views = None,
    tta: MirrorTTA = False,
    stain_tta: StainTTA = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Classify single-cell images of any size; non-image files are reported and skipped."""
    from edgehemo.device.classifier import Classifier
    from edgehemo.device.classify import classify_paths
    from edgehemo.views import describe_views

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")
    classifier = Classifier.load(model, backend=backend,
                                 settings=_backend_settings(threads, backend_option),
                                 tta=_views(views, tta, stain_tta, "auto"),
                                 classes=classes)
    console.print(escape(f"{classifier.artifact.name} on {backend}, "
                         f"{describe_views(classifier.tta)}"))
    result = classify_paths(classifier, paths, top_k=top_k, red_cell=red_cell_px,
                            one_microscope=not each_image)
    for path, reason in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(f'{path}: {reason}')}")
    if result.scale is not None:
        console.print(escape(result.scale.describe()))
    if json_output:
        print(json.dumps([p.as_dict() for p in result.predictions], indent=2))
    elif csv_output:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "label", "confidence", "topk"])
        for p in result.predictions:
            topk = ";".join(f"{t['label']}:{t['probability']:.4f}" for t in p.topk)
            writer.writerow([p.path, p.label, f"{p.confidence:.4f}", topk])
    else:
        for p in result.predictions:
            others = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in p.topk[1:])
            print(f"{p.path}\t{p.label}\t{p.confidence:.3f}\t{others}")
    if not result.predictions:
        console.print("[red]error:[/red] no readable image among the given paths")
        raise typer.Exit(2)


@app.command()
def magnification(
    paths: Annotated[list[Path], typer.Argument(help="Full-field images of one microscope, or "
                                                "folders of them (walked recursively).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure a microscope's magnification from its images: the median lone red cell's
    diameter in pixels, for `classify --red-cell-px` or the config's `cellfinder.red_cell_px`."""
    import numpy as np

    from edgehemo.device.classify import walk
    from edgehemo.errors import ImageReadError
    from edgehemo.preprocess import load_image
    from edgehemo.ruler import PBC_RED_CELL_DIAMETER, pooled_diameter

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")

    def readable() -> Iterator[np.ndarray]:
        for path in walk(paths):
            try:
                yield load_image(path)
            except ImageReadError as error:
                console.print(f"[yellow]skipped[/yellow] {escape(str(error))}")

    red_cell, cells, images, with_cells = pooled_diameter(readable())
    if not images:
        raise ValueError("no readable image among the given paths")
    if red_cell is None:
        raise ValueError(f"no lone red cell in the {images} image(s): give whole fields from a "
                         "thin part of the smear, where some red cells lie apart (for a folder "
                         "of tight single-cell crops, classify and evaluate read the "
                         "magnification from the white cells' nuclei themselves)")
    result = {"red_cell_px": round(red_cell, 1), "red_cells": cells, "images": images,
              "images_with_red_cells": with_cells,
              "scale_vs_training": round(red_cell / PBC_RED_CELL_DIAMETER, 3)}
    if json_output:
        print(json.dumps(result, indent=2))
        return
    print(f"red cells {red_cell:.1f} px across (median of {cells} lone red cells in "
          f"{with_cells} of {images} images): cells appear x{result['scale_vs_training']:.2f} "
          f"the size they had in the training images ({PBC_RED_CELL_DIAMETER} px red cells)")
    if cells < 30:
        print(f"only {cells} lone red cells: more fields give a steadier figure")
    print(f"use it with: edgehemo classify --red-cell-px {red_cell:.1f} ..., or "
          f"[cellfinder] red_cell_px = {red_cell:.1f}")


@app.command()
def benchmark(
    model: Annotated[str, typer.Argument(help="Model name, e.g. cbam_cnn (all its formats).")],
    data: Annotated[Path | None, typer.Option(help="Data to measure accuracy on.")] = None,
    split: Annotated[str, typer.Option(help="Split of --data.")] = "test",
    threads: Annotated[str, typer.Option(help="Thread counts, comma-separated.")] = "1",
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    repeats: Annotated[int, typer.Option(help="Timed runs per setting.")] = 100,
    min_accuracy: Annotated[
        float | None, typer.Option(help="Exit 1 if a format scores below this.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write rows as JSON.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown table.")] = None,
) -> None:
    """One row per format: status, size, accuracy, ms per image, images/s, speed-up."""
    from edgehemo.export.benchmark import benchmark as run_benchmark
    from edgehemo.export.benchmark import to_markdown

    rows = run_benchmark(
        model, data=data, split=split, threads=[int(t) for t in threads.split(",")],
        batch_sizes=[int(b) for b in batch_sizes.split(",")], repeats=repeats,
    )
    table = to_markdown(rows)
    print(table)
    if json_out:
        json_out.write_text(json.dumps([row.as_dict() for row in rows], indent=2) + "\n")
    if markdown:
        markdown.write_text(table + "\n")
    if min_accuracy is not None:
        low = [r.name for r in rows if r.accuracy is not None and r.accuracy < min_accuracy]
        failed = [r.name for r in rows if r.status != "passed"]
        if low or failed:
            console.print(f"[red]below {min_accuracy}:[/red] {escape(f'{low}; failed: {failed}')}")
            raise typer.Exit(1)


@app.command()
def doctor(
    state_dir: Annotated[Path | None, typer.Option(help="Where results are stored.")] = None,
) -> None:
    """Check this machine: runtimes, accelerators, cameras, disk, model integrity."""

    from edgehemo.device.config import default_state_dir
    from edgehemo.device.doctor import run_checks

    state_dir = state_dir or default_state_dir()
    failed_required = False
    out = Console(soft_wrap=True)
    for check in run_checks(state_dir):
        mark = "[green]OK[/green]     " if check.ok else "[yellow]missing[/yellow]"
        fix = f"  -> {check.fix}" if not check.ok and check.fix else ""
        out.print(f"{mark} {escape(check.name)}: {escape(check.detail + fix)}")
        failed_required |= check.required and not check.ok
    if failed_required:
        raise typer.Exit(1)


@app.command()
def models(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List exported models, shipped weights and (with torch) the registered architectures."""
    from edgehemo.models import list_architectures, list_artifacts, list_shipped

    artifacts = [entry.summary() for entry in list_artifacts()]
    shipped = [entry.summary() for entry in list_shipped()]
    architectures = list_architectures()
    if json_output:
        print(json.dumps({"exported": artifacts, "weights": shipped,
                          "architectures": architectures}, indent=2))
        return
    from rich.table import Table

    out = Console()
    exported = Table(title="Exported models (classify, capture; no torch needed)")
    # the name is what a user types: never cut, whatever the terminal's width
    exported.add_column("name", no_wrap=True,
                        min_width=max((len(row["name"]) for row in artifacts), default=4))
    for column in ("format", "precision", "architecture", "size", "test acc", "views"):
        exported.add_column(column)
    for row in artifacts:
        accuracy = row["test_accuracy"]
        exported.add_row(
            row["name"], row["format"], row["precision"], row["architecture"],
            f"{row['bytes'] / 1e6:.2f} MB", f"{accuracy:.4f}" if accuracy is not None else "-",
            row["views"],
        )
    out.print(exported)
    table = Table(title="Shipped weights (torch checkpoints: evaluate, export, fine-tune)")
    for column in ("name", "architecture", "input", "params", "size", "test acc", "classes"):
        table.add_column(column)
    for row in shipped:
        accuracy = row["test_accuracy"]
        table.add_row(
            row["name"], row["architecture"], f"{row['input_size']}px",
            f"{row['num_params'] / 1e6:.2f}M", f"{row['bytes'] / 1e6:.1f} MB",
            f"{accuracy:.4f}" if accuracy is not None else "-", str(len(row["classes"])),
        )
    out.print(table)
    if architectures is None:
        out.print(escape("Architectures: install edgehemo[train] (torch) to list and train "
                         "them."))
        return
    arch = Table(title="Architectures (edgehemo train NAME)")
    for column in ("name", "family", "input", "params", "paper"):
        arch.add_column(column, overflow="ellipsis", no_wrap=True, max_width=48)
    for row in architectures:
        arch.add_row(row["name"], row["family"], f"{row['input_size']}px",
                     f"{row['num_params'] / 1e6:.2f}M", row["paper"])
    out.print(arch)


app.command()(capture)
app.command()(results)
app.command()(status)
app.command()(report)
app.command()(review)
app.command("export-reviewed")(export_reviewed)
app.add_typer(service_app, name="service")


def main() -> None:
    """Console entry point: user errors print one clear line, not a traceback."""
    try:
        app()
    except (EdgehemoError, ValueError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        sys.exit(2)


if __name__ == "__main__":
    main()
