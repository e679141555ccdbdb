"""``nightfold web``: the operator's console in a browser."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import click
import uvicorn

from nightfold.cli.options import with_runtime
from nightfold.ops.actions import MasterLauncher
from nightfold.ops.runtime import Runtime
from nightfold.web.app import Console, create_app

log = logging.getLogger(__name__)


@click.command("web")
@click.option("--host", "web_host", help="Listen address [env NIGHTFOLD_WEB_HOST, 127.0.0.1].")
@click.option(
    "--port", "web_port", type=click.IntRange(0, 65535), help="[env NIGHTFOLD_WEB_PORT, 8650]."
)
@click.option(
    "--masters/--no-masters",
    default=True,
    show_default=True,
    help="Start a `nightfold master run` process for a rerun or a retry (off: a retry only "
    "reopens the run, a rerun is refused).",
)
@click.option(
    "--master-logs",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the masters it starts log [default: ./nightfold-web-logs].",
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@with_runtime(web_host="web_host", web_port="web_port")
def web_cmd(
    rt: Runtime, masters: bool, master_logs: Path | None, access_log: bool, **_: object
) -> None:
    """Serve the web console: every night at a glance, each chunk on a timeline,
    workers, and cancel / retry dead chunks / rerun.

    Listens on loopback unless told otherwise. Read-only unless an operator
    password is set (NIGHTFOLD_WEB_PASSWORD; user NIGHTFOLD_WEB_USER, default
    `operator`): then actions need it (HTTP basic auth or a bearer token) and a
    form token of the console's own page. Expose it beyond loopback only behind
    TLS (docs/operator.md, "The web console").
    """
    s = rt.settings
    engine = rt.engine()
    launcher = MasterLauncher(s, master_logs or Path("nightfold-web-logs")) if masters else None
    app = create_app(Console(s, engine, launcher))
    mode = "read-only (no NIGHTFOLD_WEB_PASSWORD)" if not s.web_password else "actions enabled"
    host = s.web_host
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"nightfold console on http://{shown}:{s.web_port}/ ({mode})", err=True)
    if not _loopback(host):
        click.echo(
            f"warning: listening on {host}, beyond loopback: serve it behind TLS "
            "(docs/operator.md, 'Exposing the console')",
            err=True,
        )
    uvicorn.run(
        app,
        host=host,
        port=s.web_port,
        log_level="warning",
        access_log=access_log,
        proxy_headers=False,
        server_header=False,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
