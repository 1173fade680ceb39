"""Robustness proxy: accuracy under a fixed suite of imaging shifts, and behaviour on another lab.

    python bench/bench_robustness.py --models cbam_cnn_int8 runs/x/best.pt --markdown out.md

Part 1 - the shared validation split (pbc_jpeg_subset/val, full-resolution PBC images) under
deterministic shifts applied before the model's own preprocessing: re-staining to the colours of
another lab (BCCD, Reinhard transfer in LAB), a stain shift in optical-density space, white
balance, exposure, defocus, JPEG, sensor noise, and magnification (the cell smaller or larger in
the crop), and the crop a user hands over (wide with the cell small, tight with the cell touching
the border, off-centre). Each model frames the shifted image with its own preprocessing (centre,
auto, cell or ruler framing); with ruler framing each shifted set is framed at the magnification
measured over all its images, as `classify` and `evaluate` frame a folder (`--each-image`: each
image on its own). Accuracy per shift and the share of crops the manifest's colour reference
calls unfamiliar.

Part 2 - BCCD full-field frames (another lab, no cell-type labels): cells found by the cell
finder and framed as the capture daemon frames them (a window of the model's training window in
red-cell diameters, BCCD's red cells pooled over its frames as a session pools them; a model whose
framing is not ruler gets the finder's nucleus window), then the predicted class mix, mean
confidence, low-confidence and unfamiliar shares, and stability (the same frame shifted by 3
pixels and JPEG re-encoded: same class for the same cell?). Then BCCD's annotated white cells
cut at their boxes (tight crops) through each model's framing (the set's magnification, as
above).

Models are exported artifacts run through the device runtime (NAME or NAME:BACKEND, e.g.
cbam_cnn_int8:tflite) or torch weights (a shipped name or a .pt checkpoint); NAME@FRAMING
(centre, auto, cell, ruler) frames the raw images another way than the model's card says.
`--tta mirror|stain` averages each crop's test-time views (`edgehemo.views`, as `classify --tta`
and `--stain-tta` do) for every model. `--adapt-bn` adds, for torch models, the accuracy after
re-estimating BatchNorm statistics on the shifted images themselves (unlabelled, as `edgehemo
adapt` does with a site's crops).
Validation only: the test split is not read here.
"""

from __future__ import annotations

import argparse
import csv
import functools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edgehemo.datasets import image_files
from edgehemo.device.cellfinder import CellFinder, cut_crops, with_window
from edgehemo.models import is_artifact_name
from edgehemo.ood import ColourReference
from edgehemo.preprocess import PreprocessSpec, crop_and_resize, normalize
from edgehemo.ruler import pbc_window_side, pooled_diameter
from edgehemo.sitescale import SiteScale, framing_scale
from edgehemo.views import resolve_views, tta_views

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
Predict = Callable[[np.ndarray], np.ndarray]


class Model:
    def __init__(self, name: str) -> None:
        name, _, framing = name.partition("@")  # e.g. cbam_cnn@centre: framing overridden
        self.name = Path(name).parent.name if name.endswith(".pt") else name
        if not is_artifact_name(name.partition(":")[0]):
            self._load_torch(name)
        else:
            from edgehemo.device.classifier import Classifier

            artifact, _, backend = name.partition(":")  # e.g. cbam_cnn_int8:tflite
            classifier = Classifier.load(artifact, backend=backend or "cpu",
                                         settings={"threads": 1})
            self.spec: PreprocessSpec = classifier.manifest.preprocessing
            self.classes = classifier.manifest.classes
            self.reference: ColourReference | None = classifier.manifest.colour_reference
            self.predict: Predict = classifier.predict_framed
        if framing:
            self.spec = self.spec.model_copy(update={"framing": framing})
            self.name += f" ({framing} framing)"

    def _load_torch(self, name: str) -> None:
        import torch

        from edgehemo.models import resolve_weights
        from edgehemo.train.evaluate import load_model

        weights = resolve_weights(name)
        model = load_model(weights.checkpoint, weights.card)
        self.torch_model = model
        self.spec = weights.card.preprocessing
        self.classes = weights.card.classes
        self.reference = None

        def predict(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = []
                for start in range(0, len(images), 256):
                    batch = torch.from_numpy(normalize(images[start:start + 256], self.spec))
                    out.append(torch.softmax(model(batch), 1).numpy())
                return np.concatenate(out)

        self.predict = predict

    def adapted(self, framed: np.ndarray) -> Predict | None:
        """Predictions after BatchNorm re-estimation on `framed` (torch models only)."""
        if getattr(self, "torch_model", None) is None:
            return None
        import copy

        import torch

        from edgehemo.train.adapt import reestimate_batchnorm

        model = copy.deepcopy(self.torch_model)
        reestimate_batchnorm(model, framed, self.spec)

        def predict(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                logits = model(torch.from_numpy(normalize(images, self.spec)))
            return torch.softmax(logits, 1).numpy()

        return predict


def views_mean(predict: Predict, framed: np.ndarray, mode: str = "mirror") -> np.ndarray:
    """Probabilities averaged over the test-time views `mode` names (`edgehemo.views`: mirror
    or stain), as the device's `Classifier(tta=mode)` averages them."""
    return np.mean([predict(view) for view in tta_views(framed, mode)], axis=0)


# -- shifts on raw BGR images ------------------------------------------------------------------

def lab_stats(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.concatenate([cv2.cvtColor(i, cv2.COLOR_BGR2LAB).reshape(-1, 3) for i in images])
    pixels = pixels.astype(np.float32)
    return pixels.mean(0), pixels.std(0)


def reinhard(image: np.ndarray, target: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0) + 1e-3
    lab = (lab - mean) / std * target[1] + target[0]
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def hed_shift(image: np.ndarray, scale=(1.3, 0.7, 1.0)) -> np.ndarray:
    stains = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
    rgb = image[..., ::-1].astype(np.float32) / 255
    od = -np.log(np.maximum(rgb, 1 / 255))
    hed = od @ np.linalg.inv(stains)
    od = (hed * np.asarray(scale)) @ stains
    out = np.clip(np.exp(-od) * 255, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out[..., ::-1])


def gains(b: float, g: float, r: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda im: np.clip(im * np.array([b, g, r]), 0, 255).astype(np.uint8)


def jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    def apply(image: np.ndarray) -> np.ndarray:
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    return apply


def noise(image: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(int(image[0, 0, 0]) + image.shape[0])
    return np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)


def rescaled(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    """The same field at another magnification, still the same pixel size: smaller cells are
    surrounded by the field's reflection, larger ones lose the field's edges."""
    def apply(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        resized = cv2.resize(image, (round(width * factor), round(height * factor)),
                             interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        rows, cols = resized.shape[:2]
        if factor < 1:
            top, left = (height - rows) // 2, (width - cols) // 2
            return cv2.copyMakeBorder(resized, top, height - rows - top, left,
                                      width - cols - left, cv2.BORDER_REFLECT_101)
        top, left = (rows - height) // 2, (cols - width) // 2
        return np.ascontiguousarray(resized[top : top + height, left : left + width])
    return apply


def centre_cut(side: int) -> Callable[[np.ndarray], np.ndarray]:
    """A tight crop: the central `side` pixels, the cell touching the border."""
    def apply(image: np.ndarray) -> np.ndarray:
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        return np.ascontiguousarray(image[top : top + side, left : left + side])
    return apply


def shifts(bccd_colours: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Callable | None]:
    """name -> transform of the raw BGR image (None: unchanged)."""
    out: dict[str, Callable | None] = {
        "none": None,
        "stain: more haematoxylin, less eosin (OD)": hed_shift,
        "white balance: warm": gains(0.8, 0.95, 1.15),
        "white balance: cool": gains(1.15, 1.0, 0.8),
        "exposure: dark (x0.6)": lambda im: (im * 0.6).astype(np.uint8),
        "exposure: bright (gamma 0.6)": lambda im: (255 * (im / 255.0) ** 0.6).astype(np.uint8),
        "defocus (sigma 4 px)": lambda im: cv2.GaussianBlur(im, (0, 0), 4),
        "JPEG quality 25": jpeg(25),
        "sensor noise (sigma 10)": noise,
        "magnification: cell smaller (x0.7)": rescaled(0.7),
        "magnification: cell larger (x1.3)": rescaled(1.3),
        "crop: wide, cell small (x0.5)": rescaled(0.5),
        "crop: tight (central 144 px)": centre_cut(144),
        "crop: off-centre (cell 60 px from the centre)": lambda im: np.ascontiguousarray(
            im[60:, 60:]),
    }
    if bccd_colours is not None:
        out["re-stained to BCCD colours (Reinhard)"] = lambda im: reinhard(im, bccd_colours)
    return out


def frame_raw(image: np.ndarray, spec: PreprocessSpec,
              red_cell: float | None = None) -> np.ndarray:
    return crop_and_resize(np.ascontiguousarray(image[..., ::-1]), spec, red_cell)


def frame_set(images: list[np.ndarray], spec: PreprocessSpec, each_image: bool = False
              ) -> tuple[np.ndarray, SiteScale | None]:
    """Raw BGR images of one site framed as `classify` and `evaluate` frame a folder: at the
    magnification measured over all of them (`edgehemo.sitescale`), or with `each_image` (their
    `--each-image`) each on its own."""
    scale = None if each_image else framing_scale(
        (np.ascontiguousarray(im[..., ::-1]) for im in images), spec)
    red_cell = scale.red_cell if scale is not None else None
    return np.stack([frame_raw(im, spec, red_cell) for im in images]), scale


def load_val(root: Path) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    classes = sorted(p.name for p in (root / "val").iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in image_files(root / "val" / name):
            images.append(cv2.imread(str(path)))
            labels.append(label)
    return images, np.asarray(labels), classes


def bccd_frames(root: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted((root / "JPEGImages").glob("*.jpg"))]


def cut_boxes(root: Path, rows: list[dict[str, str]]) -> list[np.ndarray]:
    """Each row's box (`image`, `xmin`..`ymax`, as in BCCD's boxes.csv) cut from its BCCD frame
    (BGR); each frame is read once."""
    crops, frames = [], {}
    for row in rows:
        if row["image"] not in frames:
            frame = cv2.imread(str(root / "JPEGImages" / row["image"]))
            if frame is None:
                raise FileNotFoundError(f"{root / 'JPEGImages' / row['image']}: not readable")
            frames[row["image"]] = frame
        x0, y0, x1, y1 = (int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        crops.append(np.ascontiguousarray(frames[row["image"]][y0:y1, x0:x1]))
    return crops


def box_rows(root: Path) -> list[dict[str, str]]:
    """BCCD's annotated white-cell boxes (rows of boxes.csv), empty ones left out."""
    with open(root / "boxes.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["label"] == "WBC"
                and int(row["xmax"]) > int(row["xmin"]) and int(row["ymax"]) > int(row["ymin"])]


def bccd_box_crops(root: Path) -> list[np.ndarray]:
    """Each annotated white cell of BCCD cut at its box: the tight single-cell crop a user of
    another lab would hand to `classify` (BGR)."""
    return cut_boxes(root, box_rows(root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--pbc", type=Path, default=SHARED / "pbc_jpeg_subset")
    parser.add_argument("--bccd", type=Path, default=SHARED / "bccd")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--adapt-bn", action="store_true",
                        help="also BatchNorm re-estimation on each shifted set (torch models)")
    parser.add_argument("--each-image", action="store_true",
                        help="frame each image at its own magnification (classify "
                             "--each-image) instead of the one measured over its set")
    parser.add_argument("--tta", choices=["none", "mirror", "stain"], default="none",
                        help="average each crop's test-time views (classify --tta: mirror, "
                             "--stain-tta: stain)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    models = [Model(name) for name in args.models]
    if args.tta != "none":
        for model in models:
            mode = resolve_views(args.tta, model.spec.test_views, model.name)
            model.predict = functools.partial(views_mean, model.predict, mode=mode)
            model.name += f" ({args.tta} views)"
    images, labels, classes = load_val(args.pbc)
    frames = bccd_frames(args.bccd) if args.bccd.is_dir() else []
    finder = CellFinder()
    bccd_crops_raw = [cut_crops(f, finder.find(f), 200) for f in frames]
    bccd_colours = (lab_stats([c[..., ::-1] for crops in bccd_crops_raw for c in crops])
                    if frames else None)
    lines = ["| shift | " + " | ".join(m.name for m in models) + " |",
             "|---|" + "---:|" * len(models)]
    rows = []
    for shift, transform in shifts(bccd_colours).items():
        shifted = [transform(im) if transform else im for im in images]
        cells = []
        for model in models:
            if list(model.classes) != classes:
                raise SystemExit(f"{model.name}: classes {model.classes} differ from {classes}")
            framed, _ = frame_set(shifted, model.spec, args.each_image)
            accuracy = float((model.predict(framed).argmax(1) == labels).mean())
            odd = (f" ({model.reference.unfamiliar(framed).mean():.0%} unfamiliar)"
                   if model.reference else "")
            cells.append(f"{accuracy:.3f}{odd}")
            rows.append({"shift": shift, "model": model.name, "accuracy": round(accuracy, 4)})
            predict_adapted = model.adapted(framed) if args.adapt_bn else None
            if predict_adapted is not None and args.tta != "none":
                predict_adapted = functools.partial(views_mean, predict_adapted, mode=args.tta)
            if predict_adapted is not None:
                adapted = float((predict_adapted(framed).argmax(1) == labels).mean())
                cells[-1] += f" → {adapted:.3f} BN"
                rows.append({"shift": shift, "model": f"{model.name}+bn",
                             "accuracy": round(adapted, 4)})
        lines.append(f"| {shift} | " + " | ".join(cells) + " |")
    groups = {"mean over imaging shifts": lambda shift: not shift.startswith("crop:"),
              "mean over crop shifts": lambda shift: shift.startswith("crop:")}
    for label, belongs in groups.items():
        mean_row = []
        for model in models:
            cell = ""
            for key in (model.name, f"{model.name}+bn"):
                values = [r["accuracy"] for r in rows if r["model"] == key
                          and r["shift"] != "none" and belongs(r["shift"])]
                if values:
                    cell += (" → " if cell else "")
                    cell += f"**{np.mean(values):.3f}** (worst {min(values):.3f})"
            mean_row.append(cell)
        lines.append(f"| {label} | " + " | ".join(mean_row) + " |")
    if frames:
        lines += ["", f"BCCD: {len(frames)} frames from another lab, "
                  f"{sum(len(c) for c in bccd_crops_raw)} cells found (no type labels)", "",
                  "| model | top classes | mean confidence | low confidence | unfamiliar | "
                  "stable under 3 px shift + JPEG |", "|---|---|---:|---:|---:|---:|"]
        moved = [jpeg(80)(cv2.warpAffine(f, np.float32([[1, 0, 3], [0, 1, 3]]), f.shape[1::-1],
                                         borderMode=cv2.BORDER_REPLICATE)) for f in frames]
        red_cell = pooled_diameter(np.ascontiguousarray(f[..., ::-1]) for f in frames).diameter
        for model in models:
            size = model.spec.input_size
            side = (pbc_window_side(model.spec.crop_fraction, red_cell)
                    if red_cell and model.spec.framing == "ruler" else None)
            crops, again = [], []
            for frame, other in zip(frames, moved, strict=True):
                found, found2 = finder.find(frame), finder.find(other)
                if len(found) != len(found2) or not found:
                    continue
                if side is not None:
                    found = [with_window(cell, side) for cell in found]
                    found2 = [with_window(cell, side) for cell in found2]
                crops.append(cut_crops(frame, found, size))
                again.append(cut_crops(other, found2, size))
            crops_all, again_all = np.concatenate(crops), np.concatenate(again)
            probabilities = model.predict(crops_all)
            predicted = probabilities.argmax(1)
            stable = float((predicted == model.predict(again_all).argmax(1)).mean())
            mix = Counter(model.classes[i] for i in predicted)
            top = ", ".join(f"{name} {n / len(predicted):.0%}" for name, n in mix.most_common(3))
            confidence = probabilities.max(1)
            odd = (f"{model.reference.unfamiliar(crops_all).mean():.0%}"
                   if model.reference else "-")
            lines.append(f"| {model.name} | {top} | {confidence.mean():.2f} | "
                         f"{(confidence < 0.6).mean():.0%} | {odd} | {stable:.1%} |")
            predict_adapted = model.adapted(crops_all) if args.adapt_bn else None
            if predict_adapted is not None:
                probabilities = predict_adapted(crops_all)
                predicted = probabilities.argmax(1)
                stable = float((predicted == predict_adapted(again_all).argmax(1)).mean())
                mix = Counter(model.classes[i] for i in predicted)
                top = ", ".join(f"{name} {n / len(predicted):.0%}"
                                for name, n in mix.most_common(3))
                confidence = probabilities.max(1)
                lines.append(f"| {model.name} + BN re-estimated on these crops | {top} | "
                             f"{confidence.mean():.2f} | {(confidence < 0.6).mean():.0%} | - | "
                             f"{stable:.1%} |")
    boxes = bccd_box_crops(args.bccd) if (args.bccd / "boxes.csv").is_file() else []
    if boxes:
        lines += ["", f"BCCD's {len(boxes)} annotated white cells cut at their boxes (tight "
                  "single-cell crops, as handed to `classify`; no type labels), framed by each "
                  "model's preprocessing:", "",
                  "| model | framing | top classes | mean confidence |", "|---|---|---|---:|"]
        for model in models:
            probabilities = model.predict(frame_set(boxes, model.spec, args.each_image)[0])
            mix = Counter(model.classes[i] for i in probabilities.argmax(1))
            top = ", ".join(f"{name} {n / len(boxes):.0%}" for name, n in mix.most_common(3))
            lines.append(f"| {model.name} | {model.spec.framing} | {top} | "
                         f"{probabilities.max(1).mean():.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["shift", "model", "accuracy"])
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
