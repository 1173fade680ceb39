"""What a class name means for a screener: which classes need a person's attention, and which
cells are white cells for a differential count (a manual differential counts 100 or 200 white
cells; platelets and nucleated red cells are reported beside them, not in them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# class name -> why a screener must look at it
ATTENTION: dict[str, str] = {
    "immature_granulocyte": "immature granulocyte",
    "erythroblast": "nucleated red cell",
    "blast": "blast",
    "ALL": "acute lymphoblastic leukaemia pattern",
    "AML": "acute myeloid leukaemia pattern",
    "MM": "multiple myeloma pattern",
}

NOT_WHITE_CELLS = frozenset({"platelet", "erythroblast"})
# cells without a nucleus: capture's cell finder never cuts one (it keeps nucleus-sized stained
# objects and drops platelet-sized ones), so in capture they are no answer
NOT_NUCLEATED = frozenset({"platelet"})


# Other datasets' and labs' names for the classes (after `_folded`: lower case, underscores):
# PBC's own download names immature granulocytes "ig", Raabin-WBC capitalises, LISC abbreviates,
# Matek's AML set uses cytology codes. A user's labelled folders keep their names.
CLASS_SYNONYMS: dict[str, str] = {
    "ba": "basophil", "baso": "basophil", "bas": "basophil",
    "eo": "eosinophil", "eos": "eosinophil", "eosi": "eosinophil", "eosino": "eosinophil",
    "ly": "lymphocyte", "lym": "lymphocyte", "lymp": "lymphocyte", "lymph": "lymphocyte",
    "lympho": "lymphocyte", "lyt": "lymphocyte",
    "mo": "monocyte", "mon": "monocyte", "mono": "monocyte",
    "ne": "neutrophil", "neu": "neutrophil", "neut": "neutrophil", "neutro": "neutrophil",
    "seg": "neutrophil", "sne": "neutrophil", "ngs": "neutrophil", "band": "neutrophil",
    "bne": "neutrophil", "ngb": "neutrophil", "segmented_neutrophil": "neutrophil",
    "band_neutrophil": "neutrophil", "neutrophil_segmented": "neutrophil",
    "neutrophil_band": "neutrophil",
    "ig": "immature_granulocyte",
    "my": "immature_granulocyte", "myo": "immature_granulocyte", "mmy": "immature_granulocyte",
    "mmz": "immature_granulocyte", "pmy": "immature_granulocyte", "pmo": "immature_granulocyte",
    "pmb": "immature_granulocyte",
    "myelocyte": "immature_granulocyte", "metamyelocyte": "immature_granulocyte",
    "promyelocyte": "immature_granulocyte",
    "erb": "erythroblast", "ebo": "erythroblast", "nrbc": "erythroblast",
    "nucleated_red_cell": "erythroblast", "nucleated_red_blood_cell": "erythroblast",
    "normoblast": "erythroblast",
    "plt": "platelet", "thrombocyte": "platelet",
}


def _folded(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())


def model_class(name: str, classes: Sequence[str]) -> str | None:
    """The class among `classes` (a model's) that a dataset's class name means: the same name,
    up to case, spaces, hyphens and a plural s, or a synonym from CLASS_SYNONYMS; None if none
    does."""
    if name in classes:
        return name
    by_folded = {_folded(c): c for c in classes}
    folded = _folded(name)
    for candidate in (folded, folded.removesuffix("s"), folded.removesuffix("es")):
        if candidate in by_folded:
            return by_folded[candidate]
        synonym = CLASS_SYNONYMS.get(candidate)
        if synonym is not None and synonym in classes:
            return synonym
    return None


def attention_reason(class_name: str) -> str | None:
    return ATTENTION.get(class_name)


def is_white_cell(class_name: str) -> bool:
    return class_name not in NOT_WHITE_CELLS


# `--classes white_cells`: the crops are known to be white cells (cut by a white-cell finder, or
# a lab's white-cell images), so platelets and nucleated red cells are not an answer.
WHITE_CELLS = "white_cells"
# `nucleated_cells`: every class but platelets, capture's default for the cells its finder cuts.
NUCLEATED_CELLS = "nucleated_cells"
ALL_CLASSES = "all"
KEYWORDS = (WHITE_CELLS, NUCLEATED_CELLS, ALL_CLASSES)


def answer_classes(spec: str, classes: Sequence[str]) -> tuple[int, ...]:
    """Indices of the classes a prediction may name: `spec` is comma-separated class names of
    the model, "white_cells" (its classes that are white cells), "nucleated_cells" (all but
    platelets) or "all"."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if names == [WHITE_CELLS]:
        names = [name for name in classes if is_white_cell(name)]
    elif names == [NUCLEATED_CELLS]:
        names = [name for name in classes if name not in NOT_NUCLEATED]
    elif names == [ALL_CLASSES]:
        names = list(classes)
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}: the model's classes are "
                         f"{', '.join(classes)} (or {', '.join(KEYWORDS)})")
    if len(set(names)) < 2:
        raise ValueError(f"--classes needs at least two of the model's classes, got {spec!r}")
    return tuple(sorted({classes.index(name) for name in names}))


def restricted(probabilities: np.ndarray, allowed: Sequence[int]) -> np.ndarray:
    """`probabilities` (N, C) with every class outside `allowed` at zero and each row
    renormalised over the allowed ones (evenly, where none of them had any probability)."""
    kept = np.zeros_like(probabilities)
    kept[:, allowed] = probabilities[:, allowed]
    total = kept.sum(axis=1, keepdims=True)
    even = np.zeros_like(kept)
    even[:, allowed] = 1.0 / len(allowed)
    return np.where(total > 0, kept / np.where(total > 0, total, 1), even)
