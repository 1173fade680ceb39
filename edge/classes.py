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
