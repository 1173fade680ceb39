"""Test-time views of framed crops, whose probabilities a classifier averages.

- `mirror`: each crop and its three mirror images (4 runs). A cell on a smear has no
  orientation, and the models were trained on flipped and rotated crops.
- `stain`: each crop under eight stain hues (8 runs), each hue turned by one of the four mirror
  images. A new microscope's stain and camera change how much light of each colour a nucleus
  absorbs; the 64x64 models were trained with that change drawn at random (`absorbance` in
  train/augment.py), and on another lab's cells their answer still depends on it
  (docs/robustness.md). Averaging over a fixed sample of it makes the answer depend less on the
  one hue the site happens to have. Only for models trained with that augmentation: a model
  that never saw a stain of another colour answers these views at chance (se_cnn 14 % on the
  validation split), so `resolve_views` refuses them for it.
- `auto` (a setting, not a view): the views the model's card names (`PreprocessSpec.test_views`).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

TtaMode = Literal["none", "mirror", "stain"]
TTA_MODES: tuple[str, ...] = get_args(TtaMode)
ViewsSetting = Literal["auto", "none", "mirror", "stain"]
VIEWS_SETTINGS: tuple[str, ...] = get_args(ViewsSetting)

# Each channel's (R, G, B) optical density against the crop's background is multiplied by these:
# eight rows drawn once from the training augmentation's range, log-uniform in 0.05-1.3
# (numpy default_rng(0), rounded), not chosen by any result.
STAIN_EXPONENTS: tuple[tuple[float, float, float], ...] = (
    (0.398, 0.120, 0.057),
    (0.053, 0.707, 0.978),
    (0.361, 0.539, 0.294),
    (1.052, 0.713, 0.050),
    (0.817, 0.056, 0.539),
    (0.089, 0.832, 0.292),
    (0.133, 0.198, 0.055),
    (0.075, 0.445, 0.412),
)
BACKGROUND_QUANTILE = 0.95  # as train/augment.py's absorbance: the bright plasma around the cell


def tta_mode(value: bool | str | None) -> TtaMode:
    """The test-time views `value` names: True is `mirror` (the former `--tta`), False or None
    `none`, or one of TTA_MODES."""
    if value is True:
        return "mirror"
    if value is False or value is None:
        return "none"
    if value not in TTA_MODES:
        raise ValueError(f"unknown test-time views {value!r}: choose one of {', '.join(TTA_MODES)}")
    return value  # type: ignore[return-value]  # checked against TTA_MODES above


VIEW_DESCRIPTIONS: dict[str, str] = {
    "none": "one view", "mirror": "mirror images averaged (4 runs)",
    "stain": "eight stain hues averaged (8 runs)",
}


def describe_views(mode: str) -> str:
    """How a report says which test-time views its answers averaged."""
    return VIEW_DESCRIPTIONS.get(mode, mode)


def resolve_views(value: bool | str | None, model_views: TtaMode, model: str = "this model"
                  ) -> TtaMode:
    """The views to average for a model whose card names `model_views`: `auto` means those;
    otherwise as `tta_mode` reads `value`. Stain hues only for a model whose card names them
    (trained under varied stain hues): for any other they would make its answers meaningless."""
    if value == "auto":
        return model_views
    if isinstance(value, str) and value not in TTA_MODES:
        raise ValueError(f"unknown test-time views {value!r}: choose one of "
                         f"{', '.join(VIEWS_SETTINGS)}")
    mode = tta_mode(value)
    if mode == "stain" and model_views != "stain":
        raise ValueError(
            f"{model} was not trained under varied stain hues (its card's test views: "
            f"{model_views}), so stain views would make its answers meaningless; use auto (its "
            f"views), mirror or none")
    return mode


def mirrored(batch: np.ndarray, index: int) -> np.ndarray:
    """The `index`-th (mod 4) mirror image of a batch of NHWC images: itself, left-right,
    top-bottom, both."""
    axes = ((), (2,), (1,), (1, 2))[index % 4]
    return np.ascontiguousarray(np.flip(batch, axes)) if axes else batch


def stain_views(framed: np.ndarray) -> list[np.ndarray]:
    """Each framed crop (N, H, W, 3) under each row of STAIN_EXPONENTS: every channel's ratio to
    the crop's background raised to that row's power (optical density scaled), row k turned by
    mirror image k; float32, 0..255, for `normalize`."""
    pixels = framed.astype(np.float32) / 255.0
    flat = pixels.reshape(len(pixels), -1, 3)
    background = np.quantile(flat, BACKGROUND_QUANTILE, axis=1).astype(np.float32)
    background = np.maximum(background, 1 / 255)[:, None, None, :]
    ratio = np.clip(pixels / background, 1 / 255, 1.0)
    return [mirrored(background * ratio ** np.asarray(row, np.float32) * 255.0, k)
            for k, row in enumerate(STAIN_EXPONENTS)]


def tta_views(framed: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of framed crops (N, H, W, 3) whose probabilities `mode` averages."""
    if mode == "stain":
        return stain_views(framed)
    if mode == "mirror":
        return [mirrored(framed, k) for k in range(4)]
    if mode == "none":
        return [framed]
    raise ValueError(f"unknown test-time views {mode!r}: choose one of {', '.join(TTA_MODES)}")
