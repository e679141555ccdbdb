"""Operator commands: ``status``, ``cancel`` and ``config show``."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from nightfold.cli.gridview import render_days
from nightfold.cli.options import DAY, parse_day, with_runtime
from nightfold.cli.statusview import render
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.engine import db_errors
from nightfold.common.deadline import parse_deadline
from nightfold.common.errors import ConfigError
from nightfold.master.gc import collect
from nightfold.ops.daygrid import as_dict as days_as_dict
from nightfold.ops.daygrid import day_grid
from nightfold.ops.runtime import Runtime
from nightfold.ops.status import as_dict, run_status


@click.command("status")
@click.option("--day", type=DAY, default=None, help="Only runs of this day.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Refresh live until interrupted.")
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    help="The job's last N days as a grid (to --day, default yesterday): each day's "
    "latest run, its stages, and LATE past the deadline.",
)
@click.option("--job", default=None, help="With --days: the job [default merchant_daily].")
@click.option("--deadline", help="With --days: HH:MM UTC [env NIGHTFOLD_DEADLINE].")
@with_runtime(job="job", deadline="deadline")
def status_cmd(
    rt: Runtime,
    day: dt.date | None,
    as_json: bool,
    watch: bool,
    interval: float,
    limit: int,
    days: int | None,
    **_: object,
) -> None:
    """Runs with stage progress, rows/s, ETA, the master, live workers and the
    slowest chunks; says STALLED when an unfinished run has no live master.
    With --days N: the job's recent days as a grid."""
    engine = rt.engine()
    if days is not None:
        _days_grid(rt, day, days, as_json=as_json, watch=watch, interval=interval)
        return

    def snapshot() -> dict[str, Any]:
        with db_errors(rt.settings.database_url), engine.connect() as conn:
            runs = run_status(
                conn, day=day, limit=limit, stale_seconds=rt.settings.master_stale_seconds
            )
            return as_dict(conn, runs, alive_within=30)

    if as_json:
        click.echo(json.dumps(snapshot(), indent=2, default=str))
        return
    console = Console()
    if not watch:
        console.print(render(snapshot()))
        return
    with Live(render(snapshot()), console=console, screen=False, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(render(snapshot()), refresh=True)
        except KeyboardInterrupt:
            pass


def _days_grid(
    rt: Runtime, day: dt.date | None, days: int, *, as_json: bool, watch: bool, interval: float
) -> None:
    engine = rt.engine()
    last = day or parse_day("yesterday")
    deadline = parse_deadline(rt.settings.deadline)

    def snapshot() -> dict[str, Any]:
        with db_errors(rt.settings.database_url), engine.connect() as conn:
            rows = day_grid(conn, rt.settings.job, last, days, deadline)
        return days_as_dict(rt.settings.job, rt.settings.deadline, rows)

    if as_json:
        click.echo(json.dumps(snapshot(), indent=2, default=str))
        return
    console = Console()
    if not watch:
        console.print(render_days(snapshot()))
        return
    with Live(render_days(snapshot()), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(render_days(snapshot()), refresh=True)
        except KeyboardInterrupt:
            pass


@click.command("cancel")
@click.option("--day", type=DAY, required=True)
@click.option("--job", default=None)
@with_runtime(job="job")
def cancel_cmd(rt: Runtime, day: dt.date, **_: object) -> None:
    """Ask the master and workers of the day's latest run to stop."""
    engine = rt.engine()
    with engine.begin() as conn:
        run = run_repo.latest_run(conn, rt.settings.job, day)
        if run is None:
            raise ConfigError(f"no run of {rt.settings.job} for {day}")
        if not run_repo.request_cancel(conn, run.id, "cli"):
            click.echo(f"run {run.label} is {run.state.value}; nothing to cancel")
            return
    click.echo(f"run {run.label}: cancel requested")


@click.group()
def config() -> None:
    """Settings."""


@config.command("show")
@with_runtime()
def show_cmd(rt: Runtime) -> None:
    """Print the effective settings (passwords masked)."""
    for key, value in rt.settings.masked().items():
        click.echo(f"{key} = {value}")


@click.command("quarantine")
@click.option("--day", type=DAY, required=True)
@click.option("--job", default=None)
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_runtime(job="job")
def quarantine_cmd(rt: Runtime, day: dt.date, limit: int, as_json: bool, **_: object) -> None:
    """List the malformed raw rows the day's latest run set aside, with reasons."""
    engine = rt.engine()
    with engine.connect() as conn:
        run = run_repo.latest_run(conn, rt.settings.job, day)
        if run is None:
            raise ConfigError(f"no run of {rt.settings.job} for {day}")
        rows = chunk_repo.quarantined(conn, run.id, limit)
    if as_json:
        out = [
            {
                "chunk": q.chunk_idx,
                "key": q.row_key.decode(errors="backslashreplace"),
                "reason": q.reason,
            }
            for q in rows
        ]
        click.echo(json.dumps({"run": run.label, "rows": out}, indent=2))
        return
    for q in rows:
        click.echo(
            f"{q.reason:<22} map[{q.chunk_idx}] {q.row_key.decode(errors='backslashreplace')}"
        )
    click.echo(f"{len(rows)} quarantined row(s) shown for run {run.label}")


@click.command("gc")
@click.option("--day", type=DAY, required=True)
@click.option("--job", default=None)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also the latest succeeded run's partials (its reduce can then not be redone).",
)
@with_runtime(job="job")
def gc_cmd(rt: Runtime, day: dt.date, everything: bool, **_: object) -> None:
    """Delete map partials of the day's finished runs (summaries are kept)."""
    engine = rt.engine()
    store = rt.store()
    try:
        done = collect(engine, store, rt.settings.job, day, everything=everything, actor="cli")
    finally:
        store.close()
    for c in done:
        click.echo(f"generation {c.generation}: {c.rows_deleted} partial rows deleted")
    click.echo(f"gc {rt.settings.job}/{day}: {len(done)} run(s) collected")
