"""Feeding framed uint8 images to torch: batching, augmentation and the shared normalisation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from edgehemo.datasets import ImageSet
from edgehemo.preprocess import PER_IMAGE_STD_FLOOR, PreprocessSpec, normalize
from edgehemo.train.augment import AugmentConfig, augment
from edgehemo.views import resolve_views, tta_views


def normalize_tensor(x: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """Torch twin of `edgehemo.preprocess.normalize` for float images in 0..1 (tested equal)."""
    if spec.colour_norm == "per_image":
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True, correction=0).clamp_min(PER_IMAGE_STD_FLOOR)
        return (x - mean) / std
    mean = torch.tensor(spec.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class TrainBatches:
    """Shuffled, augmented, normalised training batches drawn from a seeded generator."""

    def __init__(
        self,
        data: ImageSet,
        spec: PreprocessSpec,
        *,
        batch_size: int,
        augment_config: AugmentConfig,
        generator: torch.Generator,
        second_view: np.ndarray | None = None,
    ) -> None:
        """`second_view`: the same images framed another way (e.g. cell framing of an npz's
        centre crops); each drawn image comes from either view with equal chance."""
        self.images = torch.from_numpy(np.ascontiguousarray(data.images))  # (N, H, W, 3) uint8
        if second_view is not None and second_view.shape != data.images.shape:
            raise ValueError(f"second view has shape {second_view.shape}, "
                             f"the images {data.images.shape}")
        self.second_view = (torch.from_numpy(np.ascontiguousarray(second_view))
                            if second_view is not None else None)
        self.labels = torch.from_numpy(data.labels)
        self.spec = spec
        self.batch_size = batch_size
        self.augment_config = augment_config
        self.generator = generator

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.labels), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.second_view is not None:
                other = torch.rand(len(index), generator=self.generator) < 0.5
                images = torch.where(other.view(-1, 1, 1, 1), self.second_view[index], images)
            x = images.permute(0, 3, 1, 2).float().div_(255.0)
            x = augment(x, self.augment_config, self.generator)
            yield normalize_tensor(x, self.spec).contiguous(), self.labels[index]


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module, data: ImageSet, spec: PreprocessSpec, *, batch_size: int = 256,
    device: torch.device | None = None, tta: bool | str = "none",
) -> np.ndarray:
    """Softmax probabilities (N, classes) of `model` (on `device`, default CPU) on every image
    of `data`; `tta`: averaged over the test-time views (`edgehemo.views`), as the device's
    `Classifier(tta=...)` averages them ("auto": the views `spec` names)."""
    model.eval()
    mode = resolve_views(tta, spec.test_views)

    def probabilities(framed: np.ndarray) -> torch.Tensor:
        views = [torch.from_numpy(normalize(view, spec)) for view in tta_views(framed, mode)]
        return torch.stack([torch.softmax(model(view.to(device or "cpu")), dim=1)
                            for view in views]).mean(0).cpu()

    return torch.cat([probabilities(data.images[start : start + batch_size])
                      for start in range(0, len(data), batch_size)]).numpy()
