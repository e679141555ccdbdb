"""``nightfold demo``: the whole pipeline on the embedded backends, as separate
processes (one master, K workers), with live progress, a summary and verify."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from nightfold.cli.options import DAY
from nightfold.common.config import load_settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.errors import NightfoldError, RunFailed, VerifyMismatch
from nightfold.common.jobs import get_job
from nightfold.common.states import Stage
from nightfold.common.store import open_store
from nightfold.ops.seeding import seed_day
from nightfold.ops.verify import read_stored, verify_day


@click.command("demo")
@click.option("--rows", type=click.IntRange(min=1), default=200_000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 32), default=3, show_default=True)
@click.option("--day", type=DAY, default="2026-11-22", show_default=True)
@click.option("--chunk-rows", type=click.IntRange(min=100), default=10_000, show_default=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("nightfold-demo"),
    show_default=True,
    help="Demo directory (emptied first).",
)
def demo_cmd(rows: int, workers: int, day: dt.date, chunk_rows: int, directory: Path) -> None:
    """Seed a day, run a master and several worker processes on embedded
    backends (SQLite, a local store, database polling), then show the top
    merchants and verify every summary against a plain recomputation."""
    console = Console()
    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    env = {
        **os.environ,
        "NIGHTFOLD_DATABASE_URL": f"sqlite:///{directory / 'nightfold.db'}",
        "NIGHTFOLD_STORE_URL": f"local://{directory / 'store.sqlite'}",
        "NIGHTFOLD_BROKER_URL": "db://",
        "NIGHTFOLD_CHUNK_ROWS": str(chunk_rows),
        "NIGHTFOLD_LOG_LEVEL": "INFO",
    }
    env.pop("NIGHTFOLD_CONFIG", None)
    settings = load_settings(env=env)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = open_store(settings.store_url)
    console.print(f"[bold]nightfold demo[/] in {directory}: {rows:,} rows, {workers} workers")

    started = time.monotonic()
    seeded = seed_day(store, day, rows, salt_buckets=settings.salt_buckets, seed=1)
    seed_s = time.monotonic() - started
    console.print(f"seeded {seeded:,} raw rows for {day} in {seed_s:.1f}s")

    logs = directory / "logs"
    logs.mkdir()
    cmd = [sys.executable, "-m", "nightfold"]
    procs = [
        subprocess.Popen(
            [*cmd, "worker", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(logs / f"worker-{i}.log").open("w"),
        )
        for i in range(workers)
    ]
    run_started = time.monotonic()
    master = subprocess.Popen(
        [*cmd, "master", "run", "--day", day.isoformat()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(logs / "master.log").open("w"),
    )
    try:
        _watch(console, engine, settings.job, day, master)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    run_s = time.monotonic() - run_started
    if master.returncode != 0:
        raise RunFailed(f"the master exited {master.returncode}: see {logs / 'master.log'}")

    job = get_job(settings.job)
    _top_merchants(console, day, read_stored(store, job, day))
    report = verify_day(store, job, day, settings.salt_buckets)
    store.close()
    with engine.connect() as conn:
        run = run_repo.latest_run(conn, settings.job, day)
    engine.dispose()
    assert run is not None
    console.print(
        f"run {run.label}: {run.state.value} in {run_s:.1f}s "
        f"({seeded / max(run_s, 1e-9):,.0f} rows/s with {workers} workers)"
    )
    summary = {
        "rows": seeded,
        "workers": workers,
        "seed_s": round(seed_s, 2),
        "run_s": round(run_s, 2),
        "rows_per_s": round(seeded / max(run_s, 1e-9)),
        "verify_ok": report.ok,
    }
    (directory / "demo.json").write_text(json.dumps(summary, indent=2))
    if not report.ok:
        raise VerifyMismatch(
            f"verify: {len(report.differences)} difference(s); first: {report.differences[0]}"
        )
    console.print(
        f"[green]verify: OK[/], {report.groups_compared:,} merchant summaries identical "
        f"to a plain single-process recomputation ({report.rows_read:,} rows)"
    )
    console.print("\nsee this night in the web console (http://127.0.0.1:8650/):")
    console.print(console_command(directory), soft_wrap=True, markup=False, highlight=False)


def console_command(directory: Path) -> str:
    """The one command that opens the web console on the demo's data: the
    ``nightfold`` this demo runs as (``.venv/bin/nightfold`` under ``make demo``)."""
    program = Path(sys.argv[0])
    if program.name != "nightfold" or not program.exists():
        program = Path(sys.executable).parent / "nightfold"
    try:
        shown = str(program.resolve().relative_to(Path.cwd()))
    except ValueError:
        shown = str(program)
    if "/" not in shown:
        shown = "./" + shown
    return shlex.join(
        [
            shown,
            "web",
            "--database-url",
            f"sqlite:///{directory / 'nightfold.db'}",
            "--store-url",
            f"local://{directory / 'store.sqlite'}",
        ]
    )


def _watch(
    console: Console, engine: Engine, job: str, day: dt.date, master: subprocess.Popen[bytes]
) -> None:
    """Progress bars per stage until the master exits."""
    columns = (
        TextColumn("{task.description:>7}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks {task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {s: progress.add_task(s.value, total=None, rate="") for s in Stage}
        t0 = time.monotonic()
        while True:
            done = master.poll() is not None
            try:
                with engine.connect() as conn:
                    run = run_repo.latest_run(conn, job, day)
                    if run is not None:
                        rows = 0
                        for stage, task in tasks.items():
                            counts = chunk_repo.counts_by_state(conn, run.id, stage)
                            total = sum(counts.values()) or None
                            finished = counts.get("done", 0)
                            if stage is Stage.MAP:
                                rows = chunk_repo.rows_done(conn, run.id)
                            rate = (
                                f"{rows / max(time.monotonic() - t0, 1e-9):,.0f} rows/s"
                                if stage is Stage.MAP
                                else ""
                            )
                            progress.update(task, total=total, completed=finished, rate=rate)
            except (NightfoldError, SQLAlchemyError):
                pass  # the database may be busy mid-write: show the next poll
            if done:
                return
            time.sleep(0.2)


def _top_merchants(console: Console, day: dt.date, stored: dict[str, dict[bytes, bytes]]) -> None:
    def num(cells: dict[bytes, bytes], field: str) -> int:
        return int(cells.get(b"s:" + field.encode(), b"0") or 0)

    top = sorted(
        ((g, c) for g, c in stored.items() if not g.startswith("~")),
        key=lambda gc: (-num(gc[1], "revenue_cents"), gc[0]),
    )[:10]
    # No vertical rules: the table fits an 80-column terminal without cutting numbers.
    t = Table(
        title=f"top merchants of {day} by revenue",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    for col in ("merchant", "orders", "revenue", "refunds", "customers", "p50", "p95", "malformed"):
        t.add_column(col, justify="right")
    for group, cells in top:
        t.add_row(
            group,
            f"{num(cells, 'orders'):,}",
            f"{num(cells, 'revenue_cents') / 100:,.2f}",
            f"{num(cells, 'refunds'):,}",
            f"{num(cells, 'distinct_customers'):,}",
            f"{num(cells, 'p50_order_cents') / 100:,.2f}",
            f"{num(cells, 'p95_order_cents') / 100:,.2f}",
            f"{num(cells, 'malformed'):,}",
        )
    console.print(t)
