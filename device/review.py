"""`edgehemo review`: a local web page to confirm or correct each cell and sign off a session.

Standard library only (http.server), so it runs on the Pi without extra packages. Bound to
localhost by default; on any other address a token is required (printed in the URL, kept in a
cookie). Changes are POSTed as JSON with an `X-Edgehemo` header, which a cross-site form cannot
send, and stored as new rows: the model's output is never overwritten.
"""

from __future__ import annotations

import html
import json
import logging
import re
import secrets
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from edgehemo.device.live import read_live
from edgehemo.report import DISCLAIMER, STYLE, render_report
from edgehemo.results import session_results, unanswered_classes
from edgehemo.store import ResultStore, StorageError
from edgehemo.store.schema import NOT_A_CELL

logger = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CSRF_HEADER = "X-Edgehemo"

PAGE_SCRIPT = """
const who = document.getElementById('reviewer');
who.value = localStorage.getItem('edgehemo-reviewer') || '';
who.addEventListener('change', () => localStorage.setItem('edgehemo-reviewer', who.value));
async function post(url, body) {
  if (!who.value.trim()) { alert('Enter your name first'); who.focus(); return null; }
  const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-Edgehemo': '1'},
    body: JSON.stringify(Object.assign({reviewer: who.value}, body))});
  const data = await r.json();
  if (!r.ok) { alert(data.error); return null; }
  return data;
}
async function review(id, action) {
  const select = document.getElementById('class-' + id);
  const body = {action: action, new_class: select ? select.value : null};
  const data = await post('/api/cells/' + id + '/review', body);
  if (data) {
    const status = document.getElementById('status-' + id);
    status.textContent = data.action === 'confirm' ? 'confirmed' :
      (data.action === 'not_a_cell' ? 'not a cell' : 'moved to ' + data.reviewed_class);
    document.getElementById('cell-' + id).classList.add('done');
    refreshCounts();
  }
}
async function signOff(uid) {
  const note = document.getElementById('note').value;
  const data = await post('/api/sessions/' + uid + '/signoff', {note: note});
  if (data) { document.getElementById('signed').textContent = 'Signed off by ' + data.reviewer; }
}
async function refreshCounts() {
  const r = await fetch(location.pathname.replace('/session/', '/api/sessions/'),
                        {credentials: 'same-origin'});
  const s = await r.json();
  for (const [name, n] of Object.entries(s.counts)) {
    const cell = document.getElementById('count-' + name);
    if (cell) cell.textContent = n;
  }
  document.getElementById('count-white').textContent = s.white_cells;
}
"""

LIVE_SCRIPT = """
const rows = [['focus', 'focus', 'focus_min', '>='], ['clipped', 'clipped', 'clipped_max', '<='],
              ['brightness', 'brightness', 'brightness_min', '>='], ['colour cast', 'cast',
              'cast_max', '<=']];
async function tick() {
  try {
    const r = await fetch('/api/live', {credentials: 'same-origin'});
    const s = await r.json();
    if (r.ok) {
      document.getElementById('frame').src = '/live.jpg?t=' + s.updated;
      document.getElementById('figures').innerHTML = rows.map(([label, key, limit, op]) => {
        const good = op === '>=' ? s[key] >= s[limit] : s[key] <= s[limit];
        return `<tr><td>${label}</td><td class="n">${s[key]}</td><td class="${good ? 'good' :
          'bad'}">${good ? 'good' : 'BAD'} (${op} ${s[limit]})</td></tr>`;
      }).join('') + `<tr><td>frame</td><td colspan=2 class="${s.ok ? 'good' : 'bad'}">` +
        `${s.ok ? 'kept' : 'rejected: ' + s.reason}</td></tr>`;
      const counts = Object.entries(s.counts).map(([k, v]) => k + ' ' + v).join(', ');
      document.getElementById('count').textContent = `${s.white_cells} white cells` +
        (s.target ? ` of ${s.target}` : '') + ` · ${s.cells_in_view} in view · ${s.fps} ` +
        `frames/s · ${counts}` + (s.age_s > 5 ? ` · no update for ${s.age_s} s` : '');
    }
  } catch (e) {}
  setTimeout(tick, 300);
}
tick();
"""

REVIEW_STYLE = STYLE + """
.cell{width:132px}.cell img{width:132px;height:132px}.done{opacity:.55}
.cell select,.cell button{font-size:.9em;margin:1px 0;width:100%}
button{padding:4px 8px}input,textarea{font-size:1em;padding:4px}
"""


class ReviewApp:
    """Request handling, separate from the socket server so it can be tested directly."""

    def __init__(self, state_dir: Path, token: str | None) -> None:
        self.state_dir = state_dir
        self.token = token

    def store(self) -> ResultStore:
        return ResultStore.existing(self.state_dir)

    # pages

    def sessions_page(self) -> str:
        e = html.escape
        with self.store() as store:
            rows = []
            for session in reversed(store.sessions()):
                data = session_results(store, session["id"], with_cells=False)
                signed = "signed off" if data["signoffs"] else ""
                rows.append(
                    f"<tr><td><a href='/session/{e(session['uid'])}'>{e(session['uid'])}</a></td>"
                    f"<td>{e(session['sample_id'] or '-')}</td><td>{e(session['started_at'])}"
                    f"</td><td>{e(session['status'])}</td><td class='n'>"
                    f"{sum(data['model_counts'].values())}</td>"
                    f"<td class='n'>{data['reviewed_cells']}</td><td>{signed}</td></tr>")
        return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
                f"<title>edgehemo review</title><style>{REVIEW_STYLE}</style></head><body>"
                "<p><a href='/live'>live view</a></p><h1>Sessions</h1>"
                f"<div class='alert'>{e(DISCLAIMER)}</div><table>"
                "<tr><th>session</th><th>sample</th><th>started</th><th>status</th>"
                "<th>cells</th><th>reviewed</th><th></th></tr>" + "".join(rows)
                + "</table></body></html>")

    def session_page(self, uid: str) -> str:
        e = html.escape
        with self.store() as store:
            data = session_results(store, uid)
        classes = data["classes"]
        not_answers = unanswered_classes(data)
        counts = "".join(
            f"<tr><td>{e(n)}</td><td class='n' id='count-{e(n)}'>{c}</td></tr>"
            for n, c in data["counts"].items() if n not in not_answers)
        if not_answers:  # still offered below: a reviewer may give a cell one of these
            counts += (f"<tr><td colspan='2'>not counted in this session: "
                       f"{e(', '.join(not_answers))}</td></tr>")
        groups: dict[str, list[dict[str, Any]]] = {}
        for cell in data["cells"]:
            groups.setdefault(cell["label"], []).append(cell)
        sections = []
        for label in [*classes, NOT_A_CELL]:
            group = sorted(groups.get(label, []), key=lambda c: c["confidence"])
            if not group:
                continue
            items = []
            for cell in group:
                options = "".join(
                    f"<option value='{e(n)}'{' selected' if n == cell['label'] else ''}>"
                    f"{e(n)}</option>" for n in classes)
                status = ("" if cell["reviewed_class"] is None else
                          "not a cell" if cell["reviewed_class"] == NOT_A_CELL else
                          f"reviewed: {cell['reviewed_class']}")
                flags = " ".join(cell["flags"])
                items.append(
                    f"<div class='cell{' done' if status else ''}' id='cell-{cell['id']}' "
                    f"data-flags='{e(flags)}'>"
                    f"<img alt='cell {cell['id']}' src='/crop/{cell['id']}'>"
                    f"#{cell['id']} {e(cell['class'])} {cell['confidence']:.0%}"
                    f"<select id='class-{cell['id']}' aria-label='class'>{options}</select>"
                    f"<button onclick=\"review({cell['id']}, 'confirm')\">Confirm</button>"
                    f"<button onclick=\"review({cell['id']}, 'reclassify')\">Move</button>"
                    f"<button onclick=\"review({cell['id']}, 'not_a_cell')\">Not a cell</button>"
                    f"<div id='status-{cell['id']}'>{e(status)}</div></div>")
            title = "not a cell" if label == NOT_A_CELL else label
            sections.append(f"<h2>{e(title)} ({len(group)})</h2><div class='gallery'>"
                            + "".join(items) + "</div>")
        signed = "; ".join(f"Signed off by {s['reviewer']} at {s['at']}"
                           for s in data["signoffs"])
        return (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>review {e(uid)}</title><style>{REVIEW_STYLE}</style></head><body>"
            f"<p><a href='/'>sessions</a> · <a href='/report/{e(uid)}'>report</a></p>"
            f"<h1>Review {e(uid)} · sample {e(data['sample_id'] or '-')}</h1>"
            f"<div class='alert'>{e(DISCLAIMER)}</div>"
            f"<p><label>Reviewer <input id='reviewer' autocomplete='name'></label></p>"
            f"<table>{counts}<tr><th>white cells</th><th class='n' id='count-white'>"
            f"{data['white_cells']}</th></tr></table>"
            + "".join(sections)
            + f"<h2>Sign off</h2><p><textarea id='note' rows='2' cols='40' "
            f"placeholder='note (optional)'></textarea><br><button id='signoff' "
            f"onclick=\"signOff('{e(uid)}')\">Sign off this session</button> "
            f"<span id='signed'>{e(signed)}</span></p>"
            f"<script>{PAGE_SCRIPT}</script></body></html>")

    def live_page(self) -> str:
        return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
                f"<title>edgehemo live</title><style>{REVIEW_STYLE}"
                ".good{color:#1b7a1b}.bad{color:#b3261e;font-weight:bold}"
                "#frame{width:100%;max-width:960px;background:#222}</style></head><body>"
                "<p><a href='/'>sessions</a></p><h1>Live view</h1>"
                "<img id='frame' alt='current frame' src='/live.jpg'>"
                "<table id='figures'></table><p id='count'></p>"
                f"<script>{LIVE_SCRIPT}</script></body></html>")

    def live_image(self) -> bytes:
        image, _ = read_live(self.state_dir)
        if image is None:
            raise FileNotFoundError("no live frame: is a capture running with live_view on?")
        return image

    def live_status(self) -> dict[str, Any]:
        _, status = read_live(self.state_dir)
        if status is None:
            raise FileNotFoundError("no live figures: is a capture running?")
        status["age_s"] = round(time.time() - status["updated"], 1)
        return status

    def crop(self, cell_id: int) -> bytes:
        with self.store() as store:
            relative = store.crop_path(cell_id)
        if not relative:
            raise FileNotFoundError(f"no image for cell {cell_id}")
        path = (self.state_dir / relative).resolve()
        if self.state_dir.resolve() not in path.parents:
            raise PermissionError("crop outside the state directory")
        return path.read_bytes()

    def report(self, uid: str) -> str:
        with self.store() as store:
            return render_report(session_results(store, uid), self.state_dir)

    # actions

    def review(self, cell_id: int, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action")
        if action not in ("confirm", "reclassify", "not_a_cell"):
            raise ValueError("action must be confirm, reclassify or not_a_cell")
        with self.store() as store:
            return store.review_cell(
                cell_id, reviewer=str(body.get("reviewer") or ""),
                new_class=body.get("new_class") if action == "reclassify" else None,
                not_a_cell=action == "not_a_cell")

    def sign_off(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        reviewer = str(body.get("reviewer") or "")
        with self.store() as store:
            session = store.session(uid)
            store.sign_off(session["id"], reviewer=reviewer, note=body.get("note") or None)
        return {"session": uid, "reviewer": reviewer.strip()}

    def session_json(self, uid: str) -> dict[str, Any]:
        with self.store() as store:
            return session_results(store, uid)


def make_handler(app: ReviewApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgehemo-review"

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("%s %s", self.address_string(), format % args)

        def _authorised(self, query: dict[str, list[str]]) -> bool:
            if app.token is None:
                return True
            given = query.get("token", [None])[0] or self.headers.get("X-Edgehemo-Token")
            if given is None:
                cookie = SimpleCookie(self.headers.get("Cookie", ""))
                given = cookie["edgehemo_token"].value if "edgehemo_token" in cookie else None
            return given is not None and secrets.compare_digest(given, app.token)

        def _send(self, status: int, body: bytes, content_type: str,
                  query: dict[str, list[str]] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy",
                             "default-src 'self' data:; script-src 'unsafe-inline' 'self'; "
                             "style-src 'unsafe-inline'")
            if app.token and query and "token" in query:
                self.send_header("Set-Cookie", f"edgehemo_token={app.token}; Path=/; HttpOnly; "
                                 "SameSite=Strict")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict[str, Any]) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _error(self, error: Exception) -> None:
            status = {FileNotFoundError: HTTPStatus.NOT_FOUND,
                      PermissionError: HTTPStatus.FORBIDDEN}.get(type(error),
                                                                 HTTPStatus.BAD_REQUEST)
            if isinstance(error, StorageError) and ("no session" in str(error)
                                                    or "no cell" in str(error)):
                status = HTTPStatus.NOT_FOUND
            self._json(status, {"error": str(error)})

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if not self._authorised(query):
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "token required"})
                return
            try:
                if url.path == "/":
                    page = app.sessions_page()
                elif match := re.fullmatch(r"/session/([\w-]+)", url.path):
                    page = app.session_page(match.group(1))
                elif match := re.fullmatch(r"/report/([\w-]+)", url.path):
                    page = app.report(match.group(1))
                elif url.path == "/live":
                    page = app.live_page()
                elif url.path == "/live.jpg":
                    self._send(HTTPStatus.OK, app.live_image(), "image/jpeg")
                    return
                elif url.path == "/api/live":
                    self._json(HTTPStatus.OK, app.live_status())
                    return
                elif match := re.fullmatch(r"/crop/(\d+)", url.path):
                    self._send(HTTPStatus.OK, app.crop(int(match.group(1))), "image/jpeg")
                    return
                elif match := re.fullmatch(r"/api/sessions/([\w-]+)", url.path):
                    self._json(HTTPStatus.OK, app.session_json(match.group(1)))
                    return
                else:
                    raise FileNotFoundError(f"no page {url.path}")
            except (OSError, StorageError, ValueError) as error:
                self._error(error)
                return
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", query)

        def do_POST(self) -> None:
            url = urlparse(self.path)
            if not self._authorised(parse_qs(url.query)):
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "token required"})
                return
            if self.headers.get(CSRF_HEADER) is None:
                self._json(HTTPStatus.FORBIDDEN, {"error": f"missing {CSRF_HEADER} header"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
                if match := re.fullmatch(r"/api/cells/(\d+)/review", url.path):
                    self._json(HTTPStatus.OK, app.review(int(match.group(1)), body))
                elif match := re.fullmatch(r"/api/sessions/([\w-]+)/signoff", url.path):
                    self._json(HTTPStatus.OK, app.sign_off(match.group(1), body))
                else:
                    raise FileNotFoundError(f"no action {url.path}")
            except (OSError, StorageError, ValueError) as error:
                self._error(error)

    return Handler


def make_server(state_dir: Path, host: str = "127.0.0.1", port: int = 8470,
                token: str | None = None) -> tuple[ThreadingHTTPServer, str | None]:
    """The server (not yet serving) and the token it requires (None on localhost)."""
    if token is None and host not in LOCAL_HOSTS:
        token = secrets.token_urlsafe(16)
    server = ThreadingHTTPServer((host, port), make_handler(ReviewApp(state_dir, token)))
    return server, token


def export_reviewed(state_dir: Path, sessions: list[str], out: Path) -> dict[str, int]:
    """Reviewed cells as an ImageFolder (`out/<class>/<session>-<cell>.jpg`) for `edgehemo train`.

    Only cells a person reviewed are exported (confirmed or moved); cells marked not a cell and
    unreviewed cells are left out. Returns images per class.
    """
    import shutil

    exported: dict[str, int] = {}
    with ResultStore.existing(state_dir) as store:
        keys = sessions or [s["uid"] for s in store.sessions()]
        for key in keys:
            data = session_results(store, key)
            for cell in data["cells"]:
                label = cell["reviewed_class"]
                if label is None or label == NOT_A_CELL or not cell["crop"]:
                    continue
                if not (state_dir / cell["crop"]).is_file():
                    logger.warning("cell %s: its crop %s is missing, not exported", cell["id"],
                                   cell["crop"])
                    continue
                target = out / label / f"{data['uid']}-{cell['id']}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(state_dir / cell["crop"], target)
                exported[label] = exported.get(label, 0) + 1
    return exported
