"""What a class name means for a screener: which classes need a person's attention, and which
cells are white cells for a differential count (a manual differential counts 100 or 200 white
cells; platelets and nucleated red cells are reported beside them, not in them)."""

from __future__ import annotations

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


def attention_reason(class_name: str) -> str | None:
    return ATTENTION.get(class_name)


def is_white_cell(class_name: str) -> bool:
    return class_name not in NOT_WHITE_CELLS
