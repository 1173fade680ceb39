"""Readers for the two dataset layouts, returning plain numpy arrays (no torch).

- MedMNIST layout `.npz`: `{train,val,test}_images` (N, H, W, 3) uint8 and `{split}_labels`
  (N, 1); images are already framed at the model's input size.
- ImageFolder: `ROOT/<split>/<class>/*.jpg` (or `ROOT/<class>/*.jpg` without splits); raw images
  cropped and resized by the shared preprocessing.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgehemo.classes import model_class
from edgehemo.errors import DatasetError, ImageReadError
from edgehemo.preprocess import IMAGE_SUFFIXES, PreprocessSpec, crop_and_resize, load_image
from edgehemo.sitescale import SiteScale, framing_scale

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
BLOODMNIST_CLASSES = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature_granulocyte",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)


@dataclass(frozen=True)
class ImageSet:
    """Framed images with integer labels and the class names the labels index."""

    images: np.ndarray  # (N, S, S, 3) uint8, RGB
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]
    files: tuple[str, ...]
    source: str
    scale: SiteScale | None = None  # the magnification measured over raw images, if it was

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices`, keeping classes and source."""
        return ImageSet(
            self.images[indices],
            self.labels[indices],
            self.classes,
            tuple(self.files[i] for i in indices) if self.files else (),
            self.source,
            self.scale,
        )


def class_mapping(names: Sequence[str], classes: tuple[str, ...], source: str = "the data"
                  ) -> dict[str, str]:
    """Each dataset class name -> the model class (of `classes`) it means
    (`edgehemo.classes.model_class`: case, plurals and other labs' names); refuse names that
    mean none."""
    mapping = {name: model_class(name, classes) for name in names}
    unknown = sorted(name for name, found in mapping.items() if found is None)
    if unknown:
        raise DatasetError(
            f"{source}: classes {unknown} are not among the model's {list(classes)}; rename "
            "those folders to one of them (other labs' usual names, e.g. ig, Neutrophil, "
            "lymphocytes, are read as the model's)"
        )
    return {name: found for name, found in mapping.items() if found is not None}


def renamed_classes(data: ImageSet, classes: tuple[str, ...]) -> dict[str, str]:
    """The class names of `data` that `align_classes` reads as another name of `classes`."""
    return _renamed(class_mapping(data.classes, classes, data.source))


def _renamed(mapping: dict[str, str]) -> dict[str, str]:
    return {name: found for name, found in mapping.items() if name != found}


def align_classes(data: ImageSet, classes: tuple[str, ...]) -> ImageSet:
    """Relabel `data` to the class order `classes` (a model's), its class names read as
    `class_mapping` reads them; refuse classes it lacks."""
    if data.classes == classes:
        return data
    mapping = class_mapping(data.classes, classes, data.source)
    renamed = _renamed(mapping)
    if renamed:
        logger.info("%s: classes read as %s", data.source,
                    ", ".join(f"{name} -> {found}" for name, found in renamed.items()))
    index = np.asarray([classes.index(mapping[name]) for name in data.classes])
    return ImageSet(data.images, index[data.labels], classes, data.files, data.source,
                    data.scale)


def load_dataset(path: str | Path, split: str, spec: PreprocessSpec, *,
                 one_microscope: bool = True) -> ImageSet:
    """Read split `split` of an npz file or an ImageFolder directory (`one_microscope`: see
    `load_image_folder`)."""
    path = Path(path)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if path.is_dir():
        return load_image_folder(path, split, spec, one_microscope=one_microscope)
    if path.suffix == ".npz":
        return load_npz(path, split, spec)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    raise DatasetError(f"{path}: expected a MedMNIST-layout .npz file or an ImageFolder directory")


def _npz_classes(archive: np.lib.npyio.NpzFile, num_classes: int) -> tuple[str, ...]:
    if "class_names" in archive.files:
        return tuple(str(name) for name in archive["class_names"])
    if num_classes == len(BLOODMNIST_CLASSES):
        return BLOODMNIST_CLASSES
    return tuple(f"class_{i}" for i in range(num_classes))


def load_npz(path: str | Path, split: str, spec: PreprocessSpec) -> ImageSet:
    """Read one split of a MedMNIST-layout npz file, checking every array."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{path}: not a readable .npz file ({error})") from error
    with archive:
        image_key, label_key = f"{split}_images", f"{split}_labels"
        missing = [key for key in (image_key, label_key) if key not in archive.files]
        if missing:
            raise DatasetError(
                f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(archive.files)}"
            )
        images, labels = archive[image_key], archive[label_key]
        if images.dtype != np.uint8:
            raise DatasetError(f"{path}: {image_key} has dtype {images.dtype}, expected uint8")
        if images.ndim != 4 or images.shape[3] != 3:
            raise DatasetError(
                f"{path}: {image_key} has shape {images.shape}, expected (N, H, W, 3) RGB"
            )
        if images.shape[1:3] != (spec.input_size, spec.input_size):
            raise DatasetError(
                f"{path}: {image_key} are {images.shape[1]}x{images.shape[2]}, the model takes "
                f"{spec.input_size}x{spec.input_size}"
            )
        labels = labels.reshape(-1).astype(np.int64) if labels.ndim in (1, 2) else labels
        if labels.ndim != 1 or len(labels) != len(images):
            raise DatasetError(
                f"{path}: {label_key} has shape {archive[label_key].shape}, "
                f"expected ({len(images)}, 1)"
            )
        num_classes = int(labels.max()) + 1 if len(labels) else 0
        classes = _npz_classes(archive, num_classes)
        bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
        if bad.size:
            raise DatasetError(
                f"{path}: {label_key}[{bad[0]}] = {labels[bad[0]]} is out of range "
                f"0..{len(classes) - 1} ({bad.size} bad label(s))"
            )
        files_key = f"{split}_files"
        files = tuple(str(f) for f in archive[files_key]) if files_key in archive.files else ()
    return ImageSet(images, labels, classes, files, f"{path}:{split}")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted; hidden files skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _read(file: Path) -> np.ndarray:
    try:
        return load_image(file)
    except ImageReadError as error:
        raise DatasetError(str(error)) from error


def folder_classes(path: str | Path, split: str | None = None) -> tuple[str, ...]:
    """Class names of an ImageFolder (sorted sub-folder names), optionally of one split."""
    root = Path(path)
    if split and (root / split).is_dir():
        root = root / split
    return tuple(p.name for p in _class_dirs(root))


def has_split_folders(path: str | Path) -> bool:
    """Whether an ImageFolder has train/, val/ or test/ folders; without them every split is
    the whole folder (`ROOT/<class>/*`)."""
    return any((Path(path) / split).is_dir() for split in SPLITS)


def reads_whole_folder(path: str | Path) -> bool:
    """Whether `load_dataset(path, split)` reads every image whatever the split: an
    ImageFolder without split folders."""
    return Path(path).is_dir() and not has_split_folders(path)


def load_image_folder(
    path: str | Path,
    split: str,
    spec: PreprocessSpec,
    *,
    classes: tuple[str, ...] | None = None,
    one_microscope: bool = True,
) -> ImageSet:
    """Read `ROOT/<split>/<class>/*` (or `ROOT/<class>/*`), framing each image with `spec`.
    With ruler framing and `one_microscope`, the split's magnification is measured over all its
    images first (`edgehemo.sitescale`) and every image framed at it; the images are read twice
    rather than held raw in memory."""
    root = Path(path)
    split_root = root / split
    if not split_root.is_dir():
        if has_split_folders(root):
            raise DatasetError(f"{root}: has no {split}/ folder")
        split_root = root
    class_dirs = _class_dirs(split_root)
    if not class_dirs:
        raise DatasetError(f"{split_root}: no class sub-folders (expected <class>/*.jpg)")
    found = tuple(p.name for p in class_dirs)
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{split_root}: class folder(s) {unknown} not in {list(classes)}")
    members = {class_dir: image_files(class_dir) for class_dir in class_dirs}
    for class_dir, listed in members.items():
        if not listed:
            raise DatasetError(f"{class_dir}: empty class folder (no image files)")
    every = [file for listed in members.values() for file in listed]
    scale = framing_scale(map(_read, every), spec) if one_microscope else None
    red_cell = scale.red_cell if scale is not None else None
    images: list[np.ndarray] = []
    labels: list[int] = []
    files: list[str] = []
    for class_dir, listed in members.items():
        for file in listed:
            images.append(crop_and_resize(_read(file), spec, red_cell))
            labels.append(classes.index(class_dir.name))
            files.append(str(file.relative_to(root)))
    logger.info("read %d images in %d classes from %s", len(images), len(class_dirs), split_root)
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64), classes,
                    tuple(files), str(root), scale)
