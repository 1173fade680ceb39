"""Sessions out of the results database as plain data: JSON, CSV and the differential table.

JSON layout: {"sessions": [{..session fields.., "counts": {class: n}, "cells": [{"class",
"confidence", "bbox": [x0, y0, x1, y1], "frame", ...}]}]}.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from edgehemo.classes import attention_reason, is_white_cell
from edgehemo.ood import UNFAMILIAR, session_looks_unfamiliar, unfamiliar_warning
from edgehemo.store import ResultStore
from edgehemo.store.schema import NOT_A_CELL
from edgehemo.views import tta_mode

CSV_COLUMNS = ("session", "sample_id", "cell_id", "frame", "class", "reviewed_class", "confidence",
               "x0", "y0", "x1", "y1", "flags", "crop", "model", "backend", "latency_ms")


def session_results(store: ResultStore, key: str | int | None = None, *,
                    with_cells: bool = True) -> dict[str, Any]:
    """A session as plain data. `counts` use the reviewed label of a cell when a person has
    reviewed it (cells marked not a cell drop out); `model_counts` are the model's own."""
    session = store.session(key)
    classes = session["classes"]
    cells = []
    for cell in store.cells(session["id"]):
        cells.append({
            "id": cell["id"],
            "class": cell["class"],
            "reviewed_class": cell["reviewed_class"],
            "label": cell["reviewed_class"] or cell["class"],
            "confidence": cell["confidence"],
            "bbox": cell["bbox"],
            "frame": cell["frame"],
            "probabilities": dict(zip(classes, cell["probabilities"], strict=False)),
            "flags": cell["flags"],
            "crop": cell["crop_path"],
            "model": cell["model"],
            "backend": cell["backend"],
            "latency_ms": cell["latency_ms"],
        })
    counts = dict.fromkeys(classes, 0)
    model_counts = dict.fromkeys(classes, 0)
    for cell in cells:
        model_counts[cell["class"]] = model_counts.get(cell["class"], 0) + 1
        if cell["label"] != NOT_A_CELL:
            counts[cell["label"]] = counts.get(cell["label"], 0) + 1
    white = sum(n for name, n in counts.items() if is_white_cell(name))
    out = {key: session[key] for key in (
        "uid", "id", "sample_id", "operator", "notes", "started_at", "ended_at", "status",
        "end_reason", "source", "model", "model_sha256", "backend", "target_count",
        "red_cell_px", "red_cells_measured")}
    out["classes"] = classes
    # the test-time views each crop was averaged over (edgehemo.views); sessions before the
    # "auto" setting recorded only the setting: true / false (mirror images / one view) or a
    # mode, the oldest ones nothing
    settings = session["settings"]
    out["views"] = settings.get("views") or tta_mode(settings.get("capture", {}).get("tta"))
    # sessions recorded before answers could be restricted name every class
    out["answer_classes"] = session["settings"].get("answer_classes", classes)
    # a model adapted to a site without labels (edgehemo adapt); older sessions: not recorded
    out["model_adaptation"] = session["settings"].get("model_adaptation")
    # A whole-frame model classifies fields of view: each "cell" row is one field.
    out["unit"] = "field" if session["settings"].get("model_takes") == "whole_frame" else "cell"
    out["frames"] = store.frame_summary(session["id"])
    out["counts"] = counts
    out["model_counts"] = model_counts
    out["white_cells"] = white
    out["percentages"] = {name: round(100.0 * n / white, 2) if white else 0.0
                          for name, n in counts.items()}
    out["attention"] = {name: n for name, n in counts.items() if n and attention_reason(name)}
    out["reviewed_cells"] = sum(1 for c in cells if c["reviewed_class"] is not None)
    out["signoffs"] = store.signoffs(session["id"])
    if with_cells:
        out["cells"] = cells
    return out


def all_results(store: ResultStore, key: str | int | None = None, *,
                every_session: bool = False) -> dict[str, Any]:
    keys = [s["id"] for s in store.sessions()] if every_session else [key]
    return {"sessions": [session_results(store, k) for k in keys]}


def to_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for session in results["sessions"]:
        for cell in session["cells"]:
            writer.writerow([
                session["uid"], session["sample_id"] or "", cell["id"], cell["frame"],
                cell["class"], cell["reviewed_class"] or "", f"{cell['confidence']:.4f}",
                *cell["bbox"],
                ";".join(cell["flags"]), cell["crop"] or "", cell["model"], cell["backend"],
                cell["latency_ms"],
            ])
    return buffer.getvalue()


def magnification_line(session: dict[str, Any]) -> str:
    """What the session's red cells said of the magnification its cells were framed at."""
    red_cell = session.get("red_cell_px")
    if red_cell is None:
        return "not measured (cells framed by their nucleus size)"
    measured = session.get("red_cells_measured") or 0
    source = f"from {measured} lone red cells" if measured else "set for this microscope"
    return (f"red cells {red_cell:.1f} px across ({source}); cells framed at the model's "
            "training magnification")


def adaptation_line(session: dict[str, Any]) -> str:
    """How the session's model was adapted to a site without labels, as its manifest says."""
    adaptation = session.get("model_adaptation") or {}
    parts = []
    if "batchnorm_adapted" in adaptation:
        record = adaptation["batchnorm_adapted"]
        parts.append(f"BatchNorm statistics re-estimated from {record['images']} unlabelled "
                     f"images of {Path(record['site']).name}")
    if "self_trained" in adaptation:
        record = adaptation["self_trained"]
        parts.append(f"self-trained on {record['kept']} of {record['images']} unlabelled images "
                     f"of {Path(record['site']).name} (its answers of at least "
                     f"{record['confidence']:.0%} confidence)")
    return "; ".join(parts) or "none"


def unanswered_classes(session: dict[str, Any]) -> list[str]:
    """The model's classes that were no answer in this session and that no reviewer gave a
    cell: the count does not show them as zero, it says they were not counted."""
    answers = set(session["answer_classes"])
    return [name for name, n in session["counts"].items() if name not in answers and not n]


def differential_lines(session: dict[str, Any]) -> list[str]:
    """The count as a person reads it: one line per class, white cells first."""
    counts, white = session["counts"], session["white_cells"]
    lines = [f"session {session['uid']}  sample {session['sample_id'] or '-'}  "
             f"model {session['model']} ({session['backend']}, views {session['views']})  "
             f"status {session['status']}"]
    frames = session["frames"]
    rejected = ", ".join(f"{n} {why}" for why, n in sorted(frames["rejected"].items())) or "none"
    lines.append(f"frames kept {frames['kept']}, rejected: {rejected}")
    if session.get("model_adaptation"):
        lines.append(f"site adaptation: {adaptation_line(session)}")
    if session.get("unit") == "field":
        lines.append("whole-frame model: each count below is one field of view, not one cell")
    else:
        lines.append(f"magnification: {magnification_line(session)}")
    lines.append(f"{'class':<24}{'count':>7}{'%':>8}")
    not_answers = unanswered_classes(session)
    for name, n in counts.items():
        if name in not_answers:
            continue
        unit = "%" if is_white_cell(name) else "/100 WBC"
        pct = 100.0 * n / white if white else 0.0
        flag = "  <- look" if n and attention_reason(name) else ""
        lines.append(f"{name:<24}{n:>7}{pct:>7.1f} {unit}{flag}")
    lines.append(f"{'white cells':<24}{white:>7}")
    if not_answers:
        lines.append(f"not counted in this session: {', '.join(not_answers)} "
                     "(not among its answers, [capture] classes)")
    if session.get("reviewed_cells"):
        lines.append(f"{session['reviewed_cells']} cell(s) reviewed; counts use the reviewed "
                     "labels")
    for signoff in session.get("signoffs", []):
        lines.append(f"signed off by {signoff['reviewer']} at {signoff['at']}")
    cells = session.get("cells", [])
    low = sum(1 for c in cells if "low_confidence" in c["flags"])
    if low:
        lines.append(f"{low} low-confidence cell(s) to review")
    unfamiliar = sum(1 for c in cells if UNFAMILIAR in c["flags"])
    if session_looks_unfamiliar(len(cells), unfamiliar):
        lines.append("WARNING: " + unfamiliar_warning(len(cells), unfamiliar))
    elif unfamiliar:
        lines.append(f"{unfamiliar} cell(s) look unlike the training images")
    lines.append("Screening aid only: a qualified person must confirm these results.")
    return lines
