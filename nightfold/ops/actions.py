"""The operator's actions on runs, shared by the CLI and the web console.

Cancel, retry and rerun are each implemented once: cancel and retry are
repository moves (``runs.request_cancel``, ``chunks.retry_dead``) made here in
one transaction; a rerun (and the driving of a retried run) is a master's
work, which the console starts as a ``nightfold master run`` process
(:class:`MasterLauncher`) exactly as an operator would from a shell.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from nightfold.common.config import Settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import Retried
from nightfold.common.db.engine import db_errors
from nightfold.common.db.runs import RunInfo
from nightfold.common.errors import ConfigError, RunConflict
from nightfold.common.states import TERMINAL_RUN_STATES


def latest_run(engine: Engine, url: str, job: str, day: dt.date) -> RunInfo:
    """The day's latest generation of ``job``; ConfigError when there is none."""
    with db_errors(url), engine.connect() as conn:
        run = run_repo.latest_run(conn, job, day)
    if run is None:
        raise ConfigError(f"no run of {job} for {day}")
    return run


def find_latest(engine: Engine, url: str, job: str, day: dt.date) -> RunInfo | None:
    with db_errors(url), engine.connect() as conn:
        return run_repo.latest_run(conn, job, day)


def get_run(engine: Engine, url: str, run_id: int) -> RunInfo:
    with db_errors(url), engine.connect() as conn:
        run = run_repo.get_run(conn, run_id)
    if run is None:
        raise ConfigError(f"no run {run_id}")
    return run


def cancel(engine: Engine, url: str, run_id: int, actor: str) -> bool:
    """Ask the run's master and workers to stop; False when it is already finished
    or a cancel was already requested."""
    with db_errors(url), engine.begin() as conn:
        return run_repo.request_cancel(conn, run_id, actor)


def retry(engine: Engine, url: str, run_id: int, actor: str) -> Retried:
    """Put the dead chunks of a failed run back to work (RunConflict when it cannot)."""
    with db_errors(url), engine.begin() as conn:
        return chunk_repo.retry_dead(conn, run_id, actor)


def check_rerun(engine: Engine, url: str, job: str, day: dt.date) -> RunInfo | None:
    """Refuse a rerun while the day's latest run is live (the master refuses it too,
    but an operator clicking a button should hear it at once)."""
    with db_errors(url), engine.connect() as conn:
        run = run_repo.latest_run(conn, job, day)
    if run is not None and run.state not in TERMINAL_RUN_STATES:
        raise RunConflict(
            f"run {run.label} is still {run.state.value}: cancel it first, or let it finish"
        )
    return run


@dataclass(frozen=True)
class Launched:
    pid: int
    log: Path
    command: list[str]


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that gives a child ``nightfold`` process these settings
    (flags given to the parent included), on top of ``base`` (the parent's)."""
    env = dict(os.environ if base is None else base)
    for name in (
        "database_url",
        "broker_url",
        "store_url",
        "job_modules",
        "log_level",
        "log_format",
        "master_stale_seconds",
        "connect_deadline_seconds",
        "poll_interval",
    ):
        value = getattr(settings, name)
        if value not in ("", None):
            env[f"NIGHTFOLD_{name.upper()}"] = str(value)
    # the console's own secret is of no use to a master
    env.pop("NIGHTFOLD_WEB_PASSWORD", None)
    return env


class MasterLauncher:
    """Starts ``nightfold master run`` processes for the console's rerun and retry,
    in their own session (they outlive the console: a master must finish its run),
    logging to ``log_dir``; reaps the ones that exited."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def launch(self, job: str, day: dt.date, *, rerun: bool) -> Launched:
        self.reap()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        log = self.log_dir / f"master-{job}-{day.isoformat()}-{stamp}-{os.getpid()}.log"
        command = [
            sys.executable,
            "-m",
            "nightfold",
            "master",
            "run",
            "--day",
            day.isoformat(),
            "--job",
            job,
            "--no-resume-earlier",
        ]
        if rerun:
            command.append("--rerun")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command,
                env=settings_env(self.settings),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self._procs.append(proc)
        return Launched(proc.pid, log, command[2:])

    def reap(self) -> None:
        with self._lock:
            self._procs = [p for p in self._procs if p.poll() is None]

    def running(self) -> list[int]:
        self.reap()
        with self._lock:
            return [p.pid for p in self._procs]
