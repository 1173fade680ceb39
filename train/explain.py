"""What the model looked at: Grad-CAM, the attention maps of SE/SA/CBAM blocks, and the feature
maps before and after an attention block, as the attention papers show them. One PNG per image.

Grad-CAM (Selvaraju et al. 2017) weights the last convolutional feature map by the gradient of
the predicted class, averaged per channel. Attention maps are read from the blocks themselves
(their `attention(x)` is the gate the block multiplies by).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgehemo.cards import ModelCard
from edgehemo.preprocess import crop_and_resize, load_image, normalize
from edgehemo.train.blocks import ChannelAttention, SpatialAttention, SqueezeExcitation


@dataclass
class Explanation:
    image: np.ndarray  # framed RGB uint8 (S, S, 3), what the model saw
    label: str
    confidence: float
    gradcam: np.ndarray  # (S, S) in 0..1
    spatial: list[np.ndarray] = field(default_factory=list)  # (S, S) per spatial gate, 0..1
    channel: list[np.ndarray] = field(default_factory=list)  # (C,) per channel gate
    before_after: tuple[np.ndarray, np.ndarray] | None = None  # mean |feature| around 1st gate


def _upsample(map_2d: torch.Tensor, size: int) -> np.ndarray:
    up = F.interpolate(map_2d[None, None].float(), size=(size, size), mode="bilinear",
                       align_corners=False)[0, 0]
    up = up - up.min()
    return (up / up.max().clamp_min(1e-8)).detach().numpy()


def explain_image(model: nn.Module, card: ModelCard, image_rgb: np.ndarray) -> Explanation:
    spec = card.preprocessing
    framed = crop_and_resize(image_rgb, spec)
    x = torch.from_numpy(normalize(framed[None], spec))
    gates: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    feature_maps: list[torch.Tensor] = []

    def gate_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...],
                  output: torch.Tensor) -> None:
        gates.append((module, inputs[0].detach(), output.detach()))

    def feature_hook(_module: nn.Module, _inputs: tuple[torch.Tensor, ...],
                     output: torch.Tensor) -> None:
        if output.dim() == 4:
            output.retain_grad()
            feature_maps.append(output)

    handles = []
    for module in model.modules():
        if isinstance(module, SqueezeExcitation | ChannelAttention | SpatialAttention):
            handles.append(module.register_forward_hook(gate_hook))
        if isinstance(module, nn.Conv2d | nn.MaxPool2d | SqueezeExcitation | ChannelAttention
                      | SpatialAttention):
            handles.append(module.register_forward_hook(feature_hook))
    model.eval()
    try:
        logits = model(x)
        probabilities = torch.softmax(logits, 1)[0].detach()
        index = int(probabilities.argmax())
        model.zero_grad()
        logits[0, index].backward()
    finally:
        for handle in handles:
            handle.remove()
    size = spec.input_size
    last = next(f for f in reversed(feature_maps) if f.grad is not None)
    weights = last.grad[0].mean(dim=(1, 2))
    cam = F.relu((weights[:, None, None] * last[0]).sum(0)).detach()
    explanation = Explanation(framed, card.classes[index], float(probabilities[index]),
                              _upsample(cam, size))
    for module, inputs, outputs in gates:
        with torch.no_grad():
            gate = module.attention(inputs)[0]
        if isinstance(module, SpatialAttention):
            explanation.spatial.append(_upsample(gate[0], size))
        else:
            explanation.channel.append(gate[:, 0, 0].numpy())
        if explanation.before_after is None:
            explanation.before_after = (_upsample(inputs[0].abs().mean(0), size),
                                        _upsample(outputs[0].abs().mean(0), size))
    return explanation


def save_explanation(explanation: Explanation, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [
        ("input", explanation.image, None),
        ("Grad-CAM", explanation.image, explanation.gradcam),
    ]
    panels += [(f"spatial attention {i + 1}", explanation.image, m)
               for i, m in enumerate(explanation.spatial)]
    if explanation.before_after is not None:
        panels += [("features before 1st gate", None, explanation.before_after[0]),
                   ("features after 1st gate", None, explanation.before_after[1])]
    extra = 1 if explanation.channel else 0
    columns = len(panels) + extra
    figure, axes = plt.subplots(1, columns, figsize=(2.4 * columns, 2.9))
    axes = np.atleast_1d(axes)
    for axis, (name, image, heat) in zip(axes, panels, strict=False):
        if image is not None:
            axis.imshow(image)
        if heat is not None:
            axis.imshow(heat, cmap="jet", alpha=0.45 if image is not None else 1.0)
        axis.set_title(name, fontsize=8)
        axis.axis("off")
    if explanation.channel:
        axis = axes[-1]
        last = np.sort(explanation.channel[-1])[::-1]
        axis.bar(np.arange(len(last)), last, width=1.0, color="#3b6ea8")
        axis.set_ylim(0, 1)
        axis.set_title("channel gates, last block (sorted)", fontsize=8)
        axis.tick_params(labelsize=6)
    figure.suptitle(f"{title} predicted {explanation.label} ({explanation.confidence:.0%})",
                    fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def explain_files(model: nn.Module, card: ModelCard, images: list[Path], out: Path
                  ) -> list[Path]:
    written = []
    for image_path in images:
        explanation = explain_image(model, card, load_image(image_path))
        target = out / f"{image_path.stem}_explain.png"
        save_explanation(explanation, target, title=image_path.name)
        written.append(target)
    return written


def gradcam_overlay(explanation: Explanation, size: int = 128) -> bytes:
    """The Grad-CAM heat map blended over what the model saw, as JPEG bytes (for reports)."""
    from edgehemo.preprocess import opencv

    cv2 = opencv()
    image = cv2.resize(explanation.image[..., ::-1], (size, size), interpolation=cv2.INTER_AREA)
    heat = cv2.resize((explanation.gradcam * 255).astype(np.uint8), (size, size))
    blended = cv2.addWeighted(image, 0.6, cv2.applyColorMap(heat, cv2.COLORMAP_JET), 0.4, 0)
    ok, data = cv2.imencode(".jpg", blended, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("OpenCV could not encode the overlay")
    return data.tobytes()


def session_overlays(weights_name: str, session: dict, state_dir: Path) -> dict[int, bytes]:
    """Grad-CAM overlays for every saved crop of a session (`edgehemo report --gradcam`)."""
    from edgehemo.errors import CheckpointError, EdgehemoError
    from edgehemo.models import resolve_artifact, resolve_weights
    from edgehemo.train.evaluate import load_model

    weights = resolve_weights(weights_name)
    try:
        artifact = resolve_artifact(session["model"])
    except EdgehemoError:  # the artifact may live on another machine: no sha to compare
        artifact = None
    if artifact is not None and (artifact.manifest.source_checkpoint_sha256
                                 != weights.card.checkpoint_sha256):
        raise CheckpointError(
            f"{weights_name} is not the checkpoint {session['model']} was exported from "
            "(sha256 differs): its Grad-CAM would explain another model"
        )
    model = load_model(weights.checkpoint, weights.card)
    overlays = {}
    for cell in session["cells"]:
        if cell["crop"]:
            explanation = explain_image(model, weights.card, load_image(state_dir / cell["crop"]))
            overlays[cell["id"]] = gradcam_overlay(explanation)
    return overlays
