"""The one preprocessing path, shared by training, export calibration and the device.

Raw images (a microscope crop of any size) are centre-cropped to a square and resized with area
averaging; framed images (already at the model's input size, e.g. a MedMNIST-layout npz) skip that
step. Both then go through the same normalisation. numpy and OpenCV only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgehemo.errors import ImageReadError
from edgehemo.views import TtaMode

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

Framing = Literal["centre", "auto", "cell", "ruler"]  # see edgehemo.framing
FRAMINGS: tuple[str, ...] = get_args(Framing)

# PBC images are 360x363 fields; MedMNIST's BloodMNIST takes their centre 200x200.
PBC_CROP_FRACTION = 200 / 360


class PreprocessSpec(BaseModel):
    """How an image becomes a model input; recorded in every model card and manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(64, gt=0, description="Side of the square model input, in pixels.")
    crop_fraction: float = Field(
        PBC_CROP_FRACTION,
        gt=0,
        le=1,
        description="Centre square crop of a raw image, as a fraction of its shorter side.",
    )
    resize: Literal["area"] = Field("area", description="Interpolation used to resize.")
    colour_order: Literal["RGB"] = Field("RGB", description="Channel order fed to the model.")
    mean: tuple[float, float, float] = Field(
        (0.5, 0.5, 0.5), description="Per-channel mean on the 0..1 scale."
    )
    std: tuple[float, float, float] = Field(
        (0.5, 0.5, 0.5), description="Per-channel standard deviation on the 0..1 scale."
    )
    layout: Literal["NCHW"] = Field("NCHW", description="Tensor layout of the model input.")
    colour_norm: Literal["none", "per_image"] = Field(
        "none",
        description="per_image: standardise each image's channels to zero mean and unit "
        "deviation (a stain/white-balance normalisation), instead of the fixed mean/std.",
    )
    framing: Framing = Field(
        "centre",
        description="How a raw image is cut before resizing: centre (the centre square of "
        "crop_fraction, PBC's framing), auto (that square unless the crop is clearly framed "
        "otherwise - the white cell's nucleus much wider than it or far off its centre - then a "
        "window around the nucleus) or cell (always a window around the nucleus); see "
        "edgehemo.framing. No nucleus found: the centre square. ruler: the window of as many "
        "red-cell diameters as the training window, around the nucleus, the red cells measured "
        "on the image itself or given for the site (edgehemo.ruler); auto where neither is.",
    )
    test_views: TtaMode = Field(
        "mirror",
        description="The test-time views averaged when a user asks for auto (edgehemo.views): "
        "stain for a model trained under varied stain hues (the field_hue augmentation), the "
        "only models stain views are allowed for; mirror for the others.",
    )

# floor of a channel's deviation (0..1 scale) in per-image normalisation: a flat image stays flat
PER_IMAGE_STD_FLOOR = 0.02


def opencv():  # noqa: ANN201 - the cv2 module
    """The cv2 module, or an ImportError that says which extra installs it."""
    try:
        import cv2
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "OpenCV is needed to read and resize images: pip install 'edgehemo[device]'"
        ) from error
    return cv2


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB uint8 array (H, W, 3); raise ImageReadError otherwise."""
    cv2 = opencv()
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (OpenCV could not decode it)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def shrunk(image: np.ndarray, shorter_side: int) -> tuple[np.ndarray, float]:
    """`image` area-resized so that its shorter side is at most `shorter_side` pixels (a fast
    working copy for measuring), and the scale applied (1.0: unchanged)."""
    cv2 = opencv()
    height, width = image.shape[:2]
    scale = min(1.0, shorter_side / min(height, width))
    if scale == 1.0:
        return image, scale
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    step = int(1 / scale)
    if step >= 2:
        # OpenCV's area resize is ~4x faster by a whole factor: a 1080p frame shrinks in
        # ~3.7 ms this way instead of ~8.7 ms (bench/bench_capture.py)
        image = cv2.resize(image, (width // step, height // step),
                           interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def centre_square(height: int, width: int, crop_fraction: float) -> tuple[int, int, int]:
    """(top, left, side) of the centred square that is `crop_fraction` of the shorter side."""
    side = max(1, round(crop_fraction * min(height, width)))
    return (height - side) // 2, (width - side) // 2, side


def crop_and_resize(image: np.ndarray, spec: PreprocessSpec,
                    red_cell: float | None = None) -> np.ndarray:
    """Cut a raw RGB image to a square (as `spec.framing` says) and resize it to the model's
    input size. `red_cell`: the site's red-cell diameter in this image's pixels, for ruler
    framing (measured on the image itself when not given).

    An image already at the input size is taken as framed (a MedMNIST-style crop) and returned
    unchanged: cropping it again would cut the cell.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    height, width = image.shape[:2]
    if height == width == spec.input_size:
        return np.ascontiguousarray(image)
    square = _frame(image, spec, red_cell)
    if square.shape[:2] == (spec.input_size, spec.input_size):
        return np.ascontiguousarray(square)
    cv2 = opencv()
    size = (spec.input_size, spec.input_size)
    return cv2.resize(square, size, interpolation=cv2.INTER_AREA)


def _frame(image: np.ndarray, spec: PreprocessSpec, red_cell: float | None) -> np.ndarray:
    top, left, side = centre_square(*image.shape[:2], spec.crop_fraction)
    centre = image[top : top + side, left : left + side]
    if spec.framing == "centre":
        return centre
    from edgehemo.framing import auto_window, cell_window, ruler_window, window

    box = None
    if spec.framing == "ruler":
        box = ruler_window(image, spec.crop_fraction, red_cell)
    if spec.framing == "cell":
        box = cell_window(image)
    elif box is None:
        box = auto_window(image, (left, top, left + side, top + side))
    return centre if box is None else window(image, box)


def normalize(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn framed uint8 images (N, H, W, 3) into the float32 model input (N, 3, H, W)."""
    if batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"expected a batch (N, H, W, 3), got shape {batch.shape}")
    if batch.shape[1:3] != (spec.input_size, spec.input_size):
        raise ValueError(
            f"expected {spec.input_size}x{spec.input_size} images, got "
            f"{batch.shape[1]}x{batch.shape[2]}"
        )
    if spec.colour_norm == "per_image":
        # On channel planes, ~2.6x faster than mean/std over the strided image axes of NHWC. The
        # sums run in pixel order (cumsum), as numpy's reduction over those axes does, so the
        # values are the same to the bit: the int8 models' measured figures stay exact.
        planes = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        planes /= 255.0
        flat = planes.reshape(*planes.shape[:2], -1)
        count = np.float32(flat.shape[-1])
        flat -= np.cumsum(flat, axis=-1, dtype=np.float32)[..., -1:] / count
        variance = np.cumsum(flat * flat, axis=-1, dtype=np.float32)[..., -1:] / count
        flat /= np.maximum(np.sqrt(variance), np.float32(PER_IMAGE_STD_FLOOR))
        return planes
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    scale = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    out = (batch.astype(np.float32) - mean) * scale
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def preprocess_raw(images: list[np.ndarray], spec: PreprocessSpec,
                   red_cell: float | None = None) -> np.ndarray:
    """Raw RGB images of any size -> the float32 model input (N, 3, S, S); `red_cell` as in
    `crop_and_resize`."""
    framed = np.stack([crop_and_resize(image, spec, red_cell) for image in images])
    return normalize(framed, spec)


def channel_statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (0..1 scale) of uint8 images (N, H, W, 3)."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return tuple(pixels.mean(0).round(4).tolist()), tuple(pixels.std(0).round(4).tolist())
