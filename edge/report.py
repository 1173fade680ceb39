"""The session report: one self-contained HTML file (inline CSS, SVG chart, crops as data URIs),
readable on a phone and with no network. `edgehemo report SESSION --pdf` prints it with a
headless Chromium when one is installed."""

from __future__ import annotations

import base64
import html
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgehemo.classes import attention_reason, is_white_cell
from edgehemo.errors import EdgehemoError
from edgehemo.ood import UNFAMILIAR, session_looks_unfamiliar, unfamiliar_warning
from edgehemo.results import adaptation_line, magnification_line, unanswered_classes
from edgehemo.store.schema import NOT_A_CELL
from edgehemo.views import describe_views

DISCLAIMER = (
    "Screening aid only. These results were produced automatically and must be confirmed by a "
    "qualified person before any clinical decision. They are not a diagnosis."
)
GALLERY_LIMIT = 120  # crops per class in the report; the rest are counted

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px;
color:#1b1b1b;max-width:960px;margin:auto;line-height:1.4}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.4em;border-bottom:1px solid #ccc}
.warn{background:#fff4d6;border:2px solid #c98a00;padding:8px 10px;border-radius:6px;margin:8px 0}
.alert{background:#fde2e1;border:2px solid #b3261e;padding:8px 10px;border-radius:6px;margin:8px 0}
table{border-collapse:collapse;width:100%}td,th{padding:4px 6px;border-bottom:1px solid #e3e3e3;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.meta td{overflow-wrap:anywhere}.meta td:first-child{color:#555;width:30%}
.gallery{display:flex;flex-wrap:wrap;gap:6px}.cell{width:112px;font-size:.75em;text-align:center}
.cell img{width:112px;height:112px;object-fit:cover;border-radius:4px;display:block}
.low img{outline:3px solid #c98a00}.odd img{outline:3px dashed #b3261e}
.tag{display:inline-block;padding:0 4px;border-radius:3px;background:#eee;margin:1px}
"""


def _data_uri(path: Path) -> str | None:
    try:
        return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return None


def _bar_chart(counts: dict[str, int]) -> str:
    items = [(name, n) for name, n in counts.items()]
    top = max([n for _, n in items] + [1])
    row, width = 22, 560
    bars = []
    for index, (name, n) in enumerate(items):
        y = index * row
        length = 0 if top == 0 else round((width - 230) * n / top)
        colour = "#b3261e" if attention_reason(name) and n else "#3b6ea8"
        bars.append(
            f'<text x="0" y="{y + 15}" font-size="13">{html.escape(name)}</text>'
            f'<rect x="190" y="{y + 4}" width="{length}" height="14" fill="{colour}"/>'
            f'<text x="{196 + length}" y="{y + 15}" font-size="13">{n}</text>'
        )
    height = row * len(items)
    return (f'<svg role="img" aria-label="cells per class" viewBox="0 0 {width} {height}" '
            f'width="100%" style="max-width:{width}px">{"".join(bars)}</svg>')


def render_report(session: dict[str, Any], state_dir: Path,
                  overlays: dict[int, bytes] | None = None) -> str:
    """The report of one session (the dict from `edgehemo.results.session_results`), with
    Grad-CAM overlays (cell id -> JPEG bytes) beside the crops when given."""
    e = html.escape
    cells = session.get("cells", [])
    counts, white = session["counts"], session["white_cells"]
    unfamiliar = sum(1 for c in cells if UNFAMILIAR in c["flags"])
    low = sum(1 for c in cells if "low_confidence" in c["flags"])
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>edgehemo report {e(session['uid'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Blood smear screening report</h1><div class='alert'><b>{e(DISCLAIMER)}</b></div>",
    ]
    if session_looks_unfamiliar(len(cells), unfamiliar):
        parts.append(f"<div class='alert'>{e(unfamiliar_warning(len(cells), unfamiliar))}</div>")
    if session.get("unit") == "field":
        parts.append("<div class='alert'>Whole-frame model: each counted item below is one field "
                     "of view, not one cell.</div>")
    signoffs = session.get("signoffs", [])
    review_line = (
        f"{session.get('reviewed_cells', 0)} of {len(cells)} cells reviewed; "
        + ("signed off by " + ", ".join(f"{s['reviewer']} ({s['at']})" for s in signoffs)
           if signoffs else "not signed off")
    )
    meta = [
        ("Sample", session["sample_id"] or "-"), ("Session", session["uid"]),
        ("Started", session["started_at"]), ("Ended", session["ended_at"] or "running"),
        ("Status", f"{session['status']} ({session['end_reason'] or ''})"),
        ("Operator", session["operator"] or "-"), ("Notes", session["notes"] or "-"),
        ("Model", f"{session['model']} (sha256 {session['model_sha256'][:12]}…)"),
        ("Backend", session["backend"]), ("Test-time views", describe_views(session["views"])),
        ("Site adaptation", adaptation_line(session)),
        ("Source", session["source"]), ("Review", review_line),
    ]
    if session.get("unit") != "field":
        meta.insert(-1, ("Magnification", magnification_line(session)))
    parts.append("<table class='meta'>" + "".join(
        f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in meta) + "</table>")
    parts.append("<h2>Differential count</h2>")
    rows = []
    not_answers = unanswered_classes(session)
    for name, n in counts.items():
        if name in not_answers:
            continue
        pct = 100.0 * n / white if white else 0.0
        unit = "%" if is_white_cell(name) else " per 100 WBC"
        flag = f" <span class='tag'>{e(attention_reason(name) or '')}</span>" if (
            n and attention_reason(name)) else ""
        rows.append(f"<tr><td>{e(name)}{flag}</td><td class='n'>{n}</td>"
                    f"<td class='n'>{pct:.1f}{unit}</td></tr>")
    parts.append("<table><tr><th>class</th><th>cells</th><th>share</th></tr>" + "".join(rows)
                 + f"<tr><th>white cells</th><th class='n'>{white}</th><th></th></tr></table>")
    if not_answers:
        parts.append(f"<p>Not counted in this session: {e(', '.join(not_answers))} (not among "
                     "its answers, <code>[capture] classes</code>).</p>")
    parts.append(_bar_chart({k: n for k, n in counts.items() if k not in not_answers}))
    if session.get("reviewed_cells"):
        parts.append("<p>Counts use the reviewer's labels where a cell was reviewed; the model's "
                     "own counts were: " + e(", ".join(
                         f"{k} {v}" for k, v in session["model_counts"].items() if v)) + ".</p>")
    parts.append("<h2>For the screener</h2><ul>")
    for name, n in session["attention"].items():
        parts.append(f"<li>{n} cell(s) classified {e(attention_reason(name) or name)}</li>")
    parts.append(f"<li>{low} low-confidence cell(s) (outlined in amber below)</li>")
    parts.append(f"<li>{unfamiliar} cell(s) unlike the training images (dashed red)</li></ul>")
    frames = session["frames"]
    rejected = ", ".join(f"{n} {why}" for why, n in sorted(frames["rejected"].items())) or "none"
    parts.append(f"<h2>Frames</h2><p>{frames['kept']} kept; rejected: {e(rejected)}.</p>")
    parts.append("<h2>Cells by class</h2><p>Lowest confidence first."
                 + (" Under each crop, its Grad-CAM: where the evidence for the class was."
                    if overlays else "") + "</p>")
    by_label: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        by_label.setdefault(cell["label"], []).append(cell)
    for label in [*counts, NOT_A_CELL]:
        group = sorted(by_label.get(label, []), key=lambda c: c["confidence"])
        if not group:
            continue
        title = "not a cell (reviewer)" if label == NOT_A_CELL else label
        parts.append(f"<h3>{e(title)} ({len(group)})</h3><div class='gallery'>")
        for cell in group[:GALLERY_LIMIT]:
            uri = _data_uri(state_dir / cell["crop"]) if cell["crop"] else None
            classes = " ".join(x for x in (
                "low" if "low_confidence" in cell["flags"] else "",
                "odd" if UNFAMILIAR in cell["flags"] else "") if x)
            moved = (f"<br>model: {e(cell['class'])}" if cell["reviewed_class"]
                     and cell["reviewed_class"] != cell["class"] else "")
            image = f"<img alt='cell {cell['id']}' src='{uri}'>" if uri else "<i>no image</i>"
            if overlays and cell["id"] in overlays:
                heat = base64.b64encode(overlays[cell["id"]]).decode()
                image += (f"<img alt='Grad-CAM of cell {cell['id']}' "
                          f"src='data:image/jpeg;base64,{heat}'>")
            parts.append(f"<div class='cell {classes}'>{image}#{cell['id']} · "
                         f"{cell['confidence']:.0%}{moved}</div>")
        if len(group) > GALLERY_LIMIT:
            parts.append(f"<p>… and {len(group) - GALLERY_LIMIT} more.</p>")
        parts.append("</div>")
    parts.append(f"<div class='alert'>{e(DISCLAIMER)}</div>")
    parts.append("<p><small>edgehemo · generated on the device, without network.</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(html_text: str, out: Path) -> None:
    """Print the report with a headless Chromium (offline: the page has no external resource)."""
    browser = find_chromium()
    if browser is None:
        raise EdgehemoError("--pdf needs Chromium (e.g. `sudo apt install chromium`); "
                            "--html writes the same report without it")
    with tempfile.TemporaryDirectory(prefix="edgehemo-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html_text)
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-background-networking", "--no-first-run",
                   f"--user-data-dir={tmp}/profile", "--no-pdf-header-footer",
                   f"--print-to-pdf={out.resolve()}", page.as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or not out.is_file():
            raise EdgehemoError(f"Chromium could not print the PDF: {result.stderr[-400:]}")
