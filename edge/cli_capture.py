"""The device commands of the CLI: capture, results, status and service install.

Registered on the main app by `edgehemo.cli`; device modules are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from edgehemo.tomlconfig import ConfigError

console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML config file (default /etc/edgehemo/edgehemo.toml when "
                 "it exists). Flags given here override it."),
]
StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Results directory (default: $EDGEHEMO_STATE_DIR, the "
                 "config, systemd's StateDirectory, else ~/.local/share/edgehemo)."),
]


def _load_config(config: Path | None, overrides: dict[str, Any]):
    from edgehemo.device.config import DEFAULT_CONFIG, CaptureConfig
    from edgehemo.tomlconfig import load_model

    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if config is not None and not config.is_file():
        raise ConfigError(f"{config}: no such config file")
    return load_model(CaptureConfig, config, overrides)


def capture(
    model: Annotated[str | None, typer.Option(help="Exported model, e.g. cbam_cnn_int8.")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="picamera[:N], usb:N, /dev/videoN, a video file or an image folder."),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="cpu, tflite, edgetpu or gpu.")] = None,
    threads: Annotated[int | None, typer.Option(help="Inference threads.")] = None,
    loop: Annotated[bool | None, typer.Option("--loop", help="Repeat a video file.")] = None,
    watch: Annotated[
        bool | None, typer.Option("--watch", help="Keep reading new images in a folder.")
    ] = None,
    sample_id: Annotated[str | None, typer.Option(help="Sample / slide identifier.")] = None,
    operator: Annotated[str | None, typer.Option(help="Who runs the capture.")] = None,
    notes: Annotated[str | None, typer.Option(help="Free-text notes.")] = None,
    target_count: Annotated[
        int | None, typer.Option(help="Stop after this many white cells (e.g. 100, 200).")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    save_crops: Annotated[
        bool | None, typer.Option("--save-crops/--no-save-crops", help="Keep cell JPEGs.")
    ] = None,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any config key: SECTION.KEY=VALUE, e.g. "
                     "quality.min_focus=8 or storage.reserve_mb=500; repeatable."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Capture frames, find and classify white cells, keep a differential count on this device.

    Runs until the source ends (file, folder), the target count, --max-frames or SIGTERM/Ctrl-C.
    """
    from edgehemo.device.config import resolve_state_dir
    from edgehemo.device.daemon import CaptureDaemon
    from edgehemo.results import differential_lines, session_results
    from edgehemo.store import ResultStore
    from edgehemo.tomlconfig import parse_assignment

    flags = {"model": model, "source": source, "backend": backend, "threads": threads,
             "loop": loop, "watch": watch, "sample_id": sample_id, "operator": operator,
             "notes": notes, "target_count": target_count, "max_frames": max_frames,
             "save_crops": save_crops}
    overrides = dict(parse_assignment(item) for item in set_values or [])
    overrides |= {f"capture.{key}": value for key, value in flags.items() if value is not None}
    settings = _load_config(config, overrides)
    directory = resolve_state_dir(state_dir, settings)
    summary = CaptureDaemon(settings, directory).run()
    with ResultStore.in_dir(directory) as store:
        results = session_results(store, summary.session_id)
    stages = {k: round(v / max(1, summary.frames), 3) for k, v in summary.stage_ms.items()}
    if json_output:
        results["run"] = {"fps": round(summary.fps, 2), "seconds": round(summary.seconds, 2),
                          "ms_per_frame_by_stage": stages, "crops_saved": summary.crops_saved,
                          "state_dir": str(directory)}
        print(json.dumps(results, indent=2))
        return
    print("\n".join(differential_lines(results)), flush=True)
    console.print(
        f"{summary.frames} frames in {summary.seconds:.1f} s ({summary.fps:.1f} frames/s); "
        f"ended: {summary.end_reason}; results in {directory} "
        f"(`edgehemo results {summary.session_uid}`)", markup=False,
    )


def results(
    session: Annotated[
        str | None, typer.Argument(help="Session uid or number (default: the latest).")
    ] = None,
    every_session: Annotated[bool, typer.Option("--all", help="Every session.")] = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="One CSV row per cell.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Sessions, counts, cells.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Export a session's results (differential count and every cell) as a table, CSV or JSON."""
    from edgehemo.device.config import resolve_state_dir
    from edgehemo.results import all_results, differential_lines, to_csv
    from edgehemo.store import ResultStore

    if csv_output and json_output:
        raise ValueError("choose one of --csv and --json")
    directory = resolve_state_dir(state_dir, _load_config(config, {}))
    with ResultStore.existing(directory) as store:
        data = all_results(store, session, every_session=every_session)
    if json_output:
        text = json.dumps(data, indent=2) + "\n"
    elif csv_output:
        text = to_csv(data)
    else:
        text = "\n\n".join("\n".join(differential_lines(s)) for s in data["sessions"]) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        from edgehemo.store import write_atomically

        write_atomically(out, text.encode())
        console.print(f"wrote {out}", markup=False)


def status(
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Is the daemon running, is the camera online, frames/s, cells counted, disk left."""
    import shutil

    from edgehemo.device.config import resolve_state_dir
    from edgehemo.device.status import read_status

    directory = resolve_state_dir(state_dir, _load_config(config, {}))
    current = read_status(directory)
    disk = shutil.disk_usage(directory).free / 2**20 if directory.exists() else None
    if json_output:
        print(json.dumps({"state_dir": str(directory), "disk_free_mb": disk,
                          "status": current}, indent=2))
    elif current is None:
        print(f"no capture has run with state directory {directory}")
    else:
        state = "running" if current["running"] else "not running"
        if not current["running"]:
            camera = "closed"
        elif current["camera_online"]:
            camera = "online"
        else:
            camera = f"OFFLINE ({current['camera_error'] or 'waiting for frames'})"
        print(f"capture: {state} (pid {current['pid']}, updated {current['age_s']} s ago)")
        print(f"session: {current['session']}  model {current['model']} on {current['backend']}")
        print(f"source:  {current['source']}  camera {camera}")
        print(f"frames:  {current['frames']} ({current['kept']} kept)  {current['fps']} frames/s")
        print(f"cells:   {current['cells_counted']} ({current['white_cells']} white cells)")
        images = "saving images" if current["saving_images"] in (True, None) else \
            "images PAUSED (disk under reserve)"
        if disk is not None:
            print(f"disk:    {disk:.0f} MB free in {directory}; {images}")
    if current is None or not current["running"]:
        raise typer.Exit(3)  # like `systemctl status` for a stopped unit


service_app = typer.Typer(help="The systemd service.", no_args_is_help=True)


@service_app.command("install")
def service_install(
    platform: Annotated[str, typer.Option(help="pi or jetson.")] = "pi",
    root: Annotated[
        Path | None, typer.Option(help="Stage the files under this directory instead of /.")
    ] = None,
    print_unit: Annotated[
        bool, typer.Option("--print", help="Only print the unit that would be installed.")
    ] = False,
) -> None:
    """Install the hardened systemd unit, its user, /etc/edgehemo and /var/lib/edgehemo."""
    from edgehemo.device.service import edgehemo_executable, install, render_unit

    if print_unit:
        print(render_unit(platform, edgehemo_executable()), end="")  # type: ignore[arg-type]
        return
    plan = install(platform, root=root)  # type: ignore[arg-type]
    for line in plan.done:
        console.print(line, markup=False)
    if root is None:
        console.print("next: edit /etc/edgehemo/edgehemo.toml, then "
                      "`sudo systemctl enable --now edgehemo`; `edgehemo status` shows it.")


def report(
    session: Annotated[
        str | None, typer.Argument(help="Session uid or number (default: the latest).")
    ] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="PDF (needs Chromium) instead of HTML.")]
    = False,
    html_output: Annotated[bool, typer.Option("--html", help="Self-contained HTML (default).")]
    = False,
    out: Annotated[Path | None, typer.Option(help="Output file (default `report-<uid>.html`).")]
    = None,
    gradcam: Annotated[
        str | None, typer.Option(help="Add Grad-CAM overlays from these torch weights (the "
                                 "checkpoint the model was exported from; needs torch).")
    ] = None,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """The session report: counts, chart, flags, frames, crops by class, disclaimer."""
    from edgehemo.device.config import resolve_state_dir
    from edgehemo.report import html_to_pdf, render_report
    from edgehemo.results import session_results
    from edgehemo.store import ResultStore, write_atomically

    if pdf and html_output:
        raise ValueError("choose one of --pdf and --html")
    directory = resolve_state_dir(state_dir, _load_config(config, {}))
    with ResultStore.existing(directory) as store:
        data = session_results(store, session)
    overlays = None
    if gradcam is not None:
        from edgehemo.train.explain import session_overlays

        overlays = session_overlays(gradcam, data, directory)
    text = render_report(data, directory, overlays)
    target = out or Path(f"report-{data['uid']}.{'pdf' if pdf else 'html'}")
    if pdf:
        html_to_pdf(text, target)
    else:
        write_atomically(target, text.encode())
    console.print(f"wrote {target}", markup=False)


def review(
    host: Annotated[str, typer.Option(help="Address to bind; not localhost needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8470,
    token: Annotated[
        str | None, typer.Option(help="Access token (generated when bound beyond localhost).")
    ] = None,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the review page: confirm or correct each cell, sign off sessions (Ctrl-C stops)."""
    from edgehemo.device.config import resolve_state_dir
    from edgehemo.device.review import make_server
    from edgehemo.store import ResultStore

    directory = resolve_state_dir(state_dir, _load_config(config, {}))
    ResultStore.existing(directory).close()  # say now, not on the first page, if there is none
    try:
        server, required = make_server(directory, host, port, token)
    except OSError as error:
        raise ValueError(f"cannot serve on {host}:{port}: {error.strerror} "
                         "(another review server running? try --port)") from error
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    suffix = f"/?token={required}" if required else "/"
    console.print(f"review page: http://{shown}:{server.server_address[1]}{suffix}  "
                  f"(results in {directory}; Ctrl-C stops)", markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def export_reviewed(
    sessions: Annotated[
        list[str] | None, typer.Argument(help="Session uids (default: every session).")
    ] = None,
    out: Annotated[Path, typer.Option(help="ImageFolder to write: `OUT/<class>/*.jpg`.")]
    = Path("reviewed"),
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Reviewed cells as a labelled ImageFolder, for `edgehemo train` / fine-tuning."""
    from edgehemo.device.config import resolve_state_dir
    from edgehemo.device.review import export_reviewed as run_export

    directory = resolve_state_dir(state_dir, _load_config(config, {}))
    exported = run_export(directory, sessions or [], out)
    if not exported:
        raise ValueError("no reviewed cell to export: review cells first (`edgehemo review`)")
    for name, n in sorted(exported.items()):
        print(f"{name}\t{n}")
    console.print(f"wrote {sum(exported.values())} images to {out}", markup=False)
