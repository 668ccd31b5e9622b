"""``deepaf-host serve``: the microscope's live control page (see host/docs/serve/README.md)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (such as 127.0.0.1:8000)", param_hint="--listen")
    return host.strip("[]") or "0.0.0.0", int(port_text)


@click.command()
@click.option("--port", default=None, help="Serial port of the stage board, or sim:// for the virtual board [default: the profile's].")
@click.option("--camera", "camera_spec", default=None, help="Camera: an OpenCV index/path or sim://PRESET [default: sim:// on a sim:// port, else 0].")
@click.option("--listen", default="127.0.0.1:8000", show_default=True, help="Address the page is served on; any but a loopback address needs the printed token.")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Microscope profile (TOML) whose values fill what is not given.")
@click.option("--out", "out_root", default=Path("scans"), show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Folder under which scans started from the page are written (one folder each), and whose scans the viewer shows.")
@click.option("--objective", default=None, help="Objective preset (4x, 10x, 20x, 40x) [default: the profile's, else 20x].")
@click.option("--z-min", "z_min_um", default=None, type=float, help="Z safety limit (um, machine coordinates): no jog, autofocus or scan goes below it [default: the profile's].")
def serve(port: str | None, camera_spec: str | None, listen: str, profile_path: Path | None, out_root: Path,
          objective: str | None, z_min_um: float | None) -> None:
    """Serve a live control page: preview, jog, home, autofocus, scans and their slides."""
    try:
        from aiohttp import web
    except ImportError:
        raise click.ClickException("deepaf-host serve needs the 'serve' extra: pip install 'deepaf-host[serve]'") from None
    from ..profile import find as find_profile
    from ..serve.access import is_loopback, new_token
    from ..serve.app import ServeConfig, make_app
    from ..serve.device import Microscope, shared_sim_port

    host, listen_port = parse_listen(listen)
    profile = find_profile(profile_path, port)
    if profile is not None:
        port = port or profile.port
        camera_spec = camera_spec or profile.camera
        objective = objective or profile.objective
        z_min_um = z_min_um if z_min_um is not None else profile.z_min_um
    if not port:
        raise click.UsageError("Missing option '--port' (or [microscope] port in a --profile).")
    objective = objective or "20x"
    token = None if is_loopback(host) else new_token()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    microscope = Microscope(shared_sim_port(port, f"serve-{os.getpid()}"), camera_spec, z_min_um=z_min_um,
                            objective=objective, backlash_um=getattr(profile, "backlash_um", None),
                            low_size=getattr(profile, "low_size", None))
    microscope.open()  # a port or camera that does not open fails here, before serving
    out_root.mkdir(parents=True, exist_ok=True)
    config = ServeConfig(port=microscope.port, camera=camera_spec, out_root=out_root, token=token, objective=objective,
                         z_min_um=z_min_um, profile=profile)
    if host in ("0.0.0.0", "::"):  # every address: name this computer as others reach it
        import socket

        host_shown = socket.gethostname()
    else:
        host_shown = host
    shown = f"[{host_shown}]" if ":" in host_shown else host_shown
    url = f"http://{shown}:{listen_port}/" + (f"?token={token}" if token else "")
    click.echo(f"DeepAf live page: {url}  (Ctrl-C stops)")
    try:
        web.run_app(make_app(config, microscope), host=host, port=listen_port, print=None)
    finally:
        microscope.close()
