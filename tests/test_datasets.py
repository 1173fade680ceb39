from pathlib import Path

import numpy as np
import pytest
import torch

from edgehemo.datasets import load_dataset, load_image_folder, load_npz
from edgehemo.errors import DatasetError, ImageReadError
from edgehemo.preprocess import (
    PER_IMAGE_STD_FLOOR,
    PreprocessSpec,
    crop_and_resize,
    load_image,
    normalize,
)
from edgehemo.train.data import normalize_tensor

SPEC = PreprocessSpec()


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _valid_arrays(n=4, size=64):
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8).reshape(-1, 1) % 2
    return {"train_images": images, "train_labels": labels}


def test_npz_reads_images_labels_and_default_class_names(tmp_path):
    arrays = _valid_arrays()
    data = load_npz(_npz(tmp_path / "d.npz", **arrays), "train", SPEC)
    assert data.images.shape == (4, 64, 64, 3) and data.labels.tolist() == [0, 1, 0, 1]
    assert data.classes == ("class_0", "class_1")


def test_npz_missing_array_is_named(tmp_path):
    path = _npz(tmp_path / "d.npz", train_images=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"missing array.*train_labels"):
        load_npz(path, "train", SPEC)


def test_npz_wrong_dtype_shape_and_size(tmp_path):
    arrays = _valid_arrays()
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    with pytest.raises(DatasetError, match="dtype float32, expected uint8"):
        load_npz(_npz(tmp_path / "a.npz", **arrays), "train", SPEC)
    arrays = _valid_arrays()
    arrays["train_images"] = arrays["train_images"][..., 0]
    with pytest.raises(DatasetError, match=r"expected \(N, H, W, 3\)"):
        load_npz(_npz(tmp_path / "b.npz", **arrays), "train", SPEC)
    with pytest.raises(DatasetError, match="are 32x32, the model takes 64x64"):
        load_npz(_npz(tmp_path / "c.npz", **_valid_arrays(size=32)), "train", SPEC)


def test_npz_label_out_of_range(tmp_path):
    arrays = _valid_arrays()
    arrays["class_names"] = np.array(["a", "b"])
    arrays["train_labels"][2] = 5
    with pytest.raises(DatasetError, match=r"train_labels\[2\] = 5 is out of range 0..1"):
        load_npz(_npz(tmp_path / "d.npz", **arrays), "train", SPEC)


def test_npz_label_count_mismatch(tmp_path):
    arrays = _valid_arrays()
    arrays["train_labels"] = arrays["train_labels"][:3]
    with pytest.raises(DatasetError, match=r"expected \(4, 1\)"):
        load_npz(_npz(tmp_path / "d.npz", **arrays), "train", SPEC)


def test_not_an_npz(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"not a readable \.npz"):
        load_dataset(path, "train", SPEC)
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent.npz", "train", SPEC)
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset(path, "training", SPEC)


def test_image_folder_reads_the_bundled_samples(samples_dir):
    data = load_image_folder(samples_dir, "test", SPEC)
    assert len(data) == 32 and data.images.shape[1:] == (64, 64, 3)
    assert data.classes[0] == "basophil" and np.bincount(data.labels).tolist() == [4] * 8


def test_image_folder_errors(tmp_path, samples_dir):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty class folder"):
        load_image_folder(tmp_path, "train", SPEC)
    (tmp_path / "train" / "a" / "x.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match=r"x\.jpg: not a readable image"):
        load_image_folder(tmp_path, "train", SPEC)
    with pytest.raises(DatasetError, match="has no val/ folder"):
        load_image_folder(tmp_path, "val", SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty", "train", SPEC)


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "absent.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="not a readable image"):
        load_image(tmp_path / "empty.png")


def test_crop_follows_the_bloodmnist_rule(samples_dir):
    """PBC 360x363 -> centre 200x200 at ((w-200)//2, (h-200)//2) -> 64x64 by area averaging."""
    image = load_image(next(samples_dir.glob("basophil/*.jpg")))
    assert image.shape[:2] == (363, 360)
    spec_200 = PreprocessSpec(input_size=200)
    crop = crop_and_resize(image, spec_200)
    assert np.array_equal(crop, image[81:281, 80:280])
    framed = crop_and_resize(image, SPEC)
    assert framed.shape == (64, 64, 3) and framed.dtype == np.uint8
    assert np.array_equal(crop_and_resize(framed, SPEC), framed)  # already framed: unchanged


def test_numpy_and_torch_normalisation_agree(sample_set):
    spec = PreprocessSpec(mean=(0.8, 0.66, 0.7), std=(0.22, 0.26, 0.1))
    expected = normalize(sample_set.images[:4], spec)
    x = torch.from_numpy(sample_set.images[:4]).permute(0, 3, 1, 2).float() / 255
    assert np.allclose(normalize_tensor(x, spec).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_per_image_normalisation_is_bit_exact_with_the_plain_formula(dtype):
    # the shipped int8 models' figures were measured with this formula: a faster path must not
    # move an input value by one float step (it can flip an int8 input quantisation)
    images = np.random.default_rng(3).integers(0, 256, (5, 64, 64, 3)).astype(dtype)
    pixels = images.astype(np.float32) / 255.0
    std = np.maximum(pixels.std(axis=(1, 2), keepdims=True), PER_IMAGE_STD_FLOOR)
    plain = (pixels - pixels.mean(axis=(1, 2), keepdims=True)) / std
    fast = normalize(images, PreprocessSpec(colour_norm="per_image"))
    assert fast.flags.c_contiguous and fast.dtype == np.float32
    assert np.array_equal(fast, plain.transpose(0, 3, 1, 2))
    flat = np.full((1, 64, 64, 3), 120, np.uint8)  # no contrast: the floor, not a division by 0
    assert np.allclose(normalize(flat, PreprocessSpec(colour_norm="per_image")), 0, atol=1e-3)


def test_normalize_refuses_the_wrong_size():
    with pytest.raises(ValueError, match="expected 64x64 images, got 32x32"):
        normalize(np.zeros((1, 32, 32, 3), np.uint8), SPEC)


def test_per_image_colour_normalisation_agrees_and_removes_a_colour_cast(sample_set):
    spec = PreprocessSpec(colour_norm="per_image")
    images = sample_set.images[:4]
    expected = normalize(images, spec)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert np.allclose(normalize_tensor(x, spec).numpy(), expected, atol=1e-4)
    cast = np.clip(images.astype(np.float32) * (0.8, 1.0, 1.15) + 10, 0, 255).astype(np.uint8)
    shifted = normalize(cast, spec)
    assert np.abs(shifted - expected).mean() < 0.1  # vs. ~0.5 with the fixed mean/std
    fixed = PreprocessSpec()
    assert np.abs(normalize(cast, fixed) - normalize(images, fixed)).mean() > 0.15


def test_other_labs_class_names_are_read_as_the_models():
    from edgehemo.classes import model_class

    classes = ("basophil", "eosinophil", "erythroblast", "immature_granulocyte", "lymphocyte",
               "monocyte", "neutrophil", "platelet")
    read = {name: model_class(name, classes) for name in (
        "ig", "IG", "Immature Granulocytes", "immature-granulocyte", "Neutrophil", "NEUTROPHIL",
        "neut", "NGS", "BNE", "Lymphocytes", "lymp", "eos", "Basophils", "PLT", "platelets",
        "nucleated red cell", "MYB", "blast", "smudge")}
    assert read == {
        "ig": "immature_granulocyte", "IG": "immature_granulocyte",
        "Immature Granulocytes": "immature_granulocyte",
        "immature-granulocyte": "immature_granulocyte", "Neutrophil": "neutrophil",
        "NEUTROPHIL": "neutrophil", "neut": "neutrophil", "NGS": "neutrophil",
        "BNE": "neutrophil", "Lymphocytes": "lymphocyte", "lymp": "lymphocyte",
        "eos": "eosinophil", "Basophils": "basophil", "PLT": "platelet", "platelets": "platelet",
        "nucleated red cell": "erythroblast", "MYB": None, "blast": None, "smudge": None}
    # a synonym counts only where the model has that class
    assert model_class("ig", ("basophil", "neutrophil")) is None


def test_a_labs_own_folder_names_give_the_same_labels(samples_dir, tmp_path):
    import shutil

    from edgehemo.datasets import align_classes, renamed_classes

    spec = PreprocessSpec(framing="centre")
    plain = load_image_folder(samples_dir, "test", spec)
    names = {"immature_granulocyte": "ig", "lymphocyte": "Lymphocytes", "platelet": "PLT"}
    for name in plain.classes:
        if name == "neutrophil":  # two folders of one class: segmented and band
            files = sorted((samples_dir / name).iterdir())
            for folder, part in (("SNE", files[::2]), ("BNE", files[1::2])):
                (tmp_path / folder).mkdir()
                for file in part:
                    shutil.copy(file, tmp_path / folder)
        else:
            shutil.copytree(samples_dir / name, tmp_path / names.get(name, name))
    theirs = load_image_folder(tmp_path, "test", spec)
    assert renamed_classes(theirs, plain.classes) == {
        "BNE": "neutrophil", "Lymphocytes": "lymphocyte", "PLT": "platelet", "SNE": "neutrophil",
        "ig": "immature_granulocyte"}
    aligned = align_classes(theirs, plain.classes)
    ours = dict(zip((Path(f).name for f in plain.files), plain.labels.tolist(), strict=True))
    assert {Path(f).name: label for f, label in zip(aligned.files, aligned.labels.tolist(),
                                                     strict=True)} == ours
    (tmp_path / "MYB").mkdir()
    shutil.copy(next((samples_dir / "basophil").iterdir()), tmp_path / "MYB")
    with pytest.raises(DatasetError, match=r"classes \['MYB'\] are not among the model's"):
        align_classes(load_image_folder(tmp_path, "test", spec), plain.classes)
