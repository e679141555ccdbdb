"""The rig of one trial: the session-wide resources (``Env``) and the trial's own state
and plumbing (``Rig``): spawning masters and workers with the trial's ``NIGHTFOLD_*``
environment, snapshots of its run, its log, its time limit, and cleaning up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from nightfold.common.db.models import RunEvent
from nightfold.common.db.models import Worker as WorkerRow
from nightfold.common.urls import with_query
from tests.support.chaos.observe import Snap, db_now, snapshot
from tests.support.chaos.plan import SEGMENTS, Fault, TrialPlan
from tests.support.chaos.procs import Proc
from tests.support.chaos.result import TrialResult
from tests.support.services import REPO, unique_name


@dataclass
class Env:
    """Session-wide resources shared by trials."""

    database_url: str
    broker_url: str
    store_url: str
    """With the session's table prefix."""
    logs: Path
    keep_logs: bool = False
    trial_timeout: float = 300.0


class TrialTimeout(Exception):
    pass


class Rig:
    """One trial's rig: its plan and result, the database handle, the processes it
    started (and how to start more), its private queue, its log and its clock. The
    fault injectors (``faults``, ``messages``) and the checks (``checks``,
    ``recovery``) work on it; ``Trial`` drives it."""

    def __init__(self, plan: TrialPlan, env: Env, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.env = env
        self.say = say
        self.result = TrialResult(plan)
        self.dir = env.logs / f"trial-{plan.index:03d}"
        self.procs: list[Proc] = []
        self.engine: Engine | None = None
        self.db_url = ""
        self.queue = unique_name("nightfold.chaos.")
        self.proc_env: dict[str, str] = {}
        self.started = time.monotonic()
        self.garbage_sent = 0
        self.master_restarts: list[tuple[Proc, str]] = []
        """Restarted masters, with why: after_kill or after_outage."""
        self.cancelled = False
        self.outage_over = False
        self.dead_owner: str | None = None
        """The owner of the run when its master was killed for good (nightly scenarios)."""
        self.verifying: subprocess.Popen[str] | None = None

    # -- plumbing ------------------------------------------------------------------
    def base_env(self) -> dict[str, str]:
        p = self.plan
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
        env.update(
            NIGHTFOLD_DATABASE_URL=self.db_url,
            NIGHTFOLD_BROKER_URL=with_query(self.env.broker_url, queue=self.queue),
            NIGHTFOLD_STORE_URL=self.env.store_url,
            NIGHTFOLD_JOB=p.job,
            NIGHTFOLD_CHUNK_ROWS=str(p.chunk_rows),
            NIGHTFOLD_SALT_BUCKETS=str(p.salt_buckets),
            NIGHTFOLD_REDUCE_BUCKETS=str(p.reduce_buckets),
            NIGHTFOLD_MAX_IN_FLIGHT=str(p.max_in_flight),
            NIGHTFOLD_LEASE_SECONDS=str(p.lease_seconds),
            NIGHTFOLD_MAX_ATTEMPTS=str(p.max_attempts),
            NIGHTFOLD_REPUBLISH_SECONDS="3",
            NIGHTFOLD_MASTER_STALE_SECONDS="10",
            NIGHTFOLD_SHUTDOWN_GRACE_SECONDS="10",
            NIGHTFOLD_CONNECT_DEADLINE_SECONDS="90",
            NIGHTFOLD_POLL_INTERVAL="0.1",
            NIGHTFOLD_LOG_LEVEL="INFO",
            NIGHTFOLD_DEBUG="1",  # an unexpected error prints its traceback
        )
        if p.scenario == "poison":
            env["NIGHTFOLD_JOB_MODULES"] = "tests.support.jobs"
        # every trial checkpoints inside its chunks and may split them at the end of a map
        env.update(
            NIGHTFOLD_SCAN_BATCH=str(max(10, p.chunk_rows // 8)),
            NIGHTFOLD_CHECKPOINT_ROWS=str(max(20, p.chunk_rows // 3)),
            NIGHTFOLD_SPLIT_MIN_ROWS=str(max(20, p.chunk_rows // 6)),
        )
        if p.seed % 2:  # half the trials spill their reduce's bigger groups to local disk
            env["NIGHTFOLD_SPILL_BYTES"] = "2000"
        if p.scenario in SEGMENTS:
            from tests.support.chaos import splits

            env.update(splits.env(p.chunk_rows))
        return env

    def spawn(self, role: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        n = sum(1 for p in self.procs if p.role == role)
        name = f"{role}-{n}"
        out, err = self.dir / f"{name}.out", self.dir / f"{name}.err"
        spawned_db = db_now(self.engine) if self.engine is not None else None
        with out.open("wb") as o, err.open("wb") as e:
            popen = subprocess.Popen(
                [sys.executable, "-m", "nightfold", *args],
                env=env or self.proc_env,
                stdout=o,
                stderr=e,
                cwd=REPO,
            )
        proc = Proc(role, name, popen, out, err, spawned_db, time.monotonic())
        self.procs.append(proc)
        self.log(f"spawned {name} pid {proc.pid}: {' '.join(args)}")
        return proc

    def master(self, *extra: str) -> Proc:
        env = dict(self.proc_env)
        if self.plan.scenario == "outage_past_deadline" and not self.outage_over:
            env["NIGHTFOLD_CONNECT_DEADLINE_SECONDS"] = str(self.plan.deadline_seconds)
        return self.spawn(
            "master", "master", "run", "--day", self.plan.day.isoformat(), *extra, env=env
        )

    def worker(self) -> Proc:
        return self.spawn("worker", "worker", "run")

    def masters_alive(self) -> list[Proc]:
        return [p for p in self.procs if p.role == "master" and p.alive()]

    def workers_alive(self) -> list[Proc]:
        return [p for p in self.procs if p.role == "worker" and p.alive()]

    def log(self, line: str) -> None:
        stamp = f"{time.monotonic() - self.started:7.3f}"
        with (self.dir / "harness.log").open("a") as fh:
            fh.write(f"{stamp} {line}\n")

    def snap(self, *, claims: bool = False) -> Snap | None:
        assert self.engine is not None
        try:
            return snapshot(self.engine, claims=claims)
        except Exception as exc:  # the database may be restarting under us
            self.log(f"snapshot failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            time.sleep(0.05)
            return None

    def check_time(self, what: str) -> None:
        if time.monotonic() - self.started > self.env.trial_timeout:
            raise TrialTimeout(f"trial exceeded {self.env.trial_timeout:.0f}s while {what}")

    def wait_exit(self, proc: Proc, timeout: float) -> int | None:
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def victim(self, snap: Snap, stage: str) -> Proc | None:
        mine = {p.pid: p for p in self.workers_alive() if not p.signalled}
        for pid, st, _chunk in snap.claims:
            if st == stage and pid in mine:
                return mine[pid]
        return None

    def fired(self, f: Fault, observed: str, note: str = "") -> None:
        f.fired = True
        f.observed = observed
        f.note = note
        self.log(f"fired {f.describe()} -> {observed} {note}")

    def wait_started(self) -> None:
        """Wait until every process we started is past its startup: a worker registered,
        a master acquired its run (or exited). Startup is not covered by the connect
        deadline (a process that starts during an outage exits 3 at once), so a
        restart lands only on processes that are up and running."""
        assert self.engine is not None
        deadline = time.monotonic() + 30
        pending: list[str] = []
        while time.monotonic() < deadline:
            self.check_time("waiting for processes to start")
            try:
                with self.engine.connect() as conn:
                    workers = set(conn.execute(select(WorkerRow.pid)).scalars())
                    actors = list(
                        conn.execute(
                            select(RunEvent.actor).where(RunEvent.kind == "master_acquired")
                        ).scalars()
                    )
            except Exception:
                time.sleep(0.1)
                continue
            masters = {int(a.split(":")[1]) for a in actors if a and a.count(":") == 2}
            pending = [
                proc.name
                for proc in self.procs
                if proc.alive()
                and (
                    (proc.role == "worker" and proc.pid not in workers)
                    or (proc.role == "master" and proc.pid not in masters)
                )
            ]
            if not pending:
                return
            time.sleep(0.05)
        self.log(f"still starting after 30s: {pending}")

    def note_traceback(self, proc: Proc, where: str) -> None:
        """A traceback in a process's log: a crash is a problem, a logged one an anomaly
        (reported, not failing the trial), a poison row's an expectation."""
        if where == "(no log record)":
            self.result.problem(f"{proc.name} (pid {proc.pid}) crashed with a traceback")
            return
        if self.plan.scenario == "poison" and proc.role == "worker" and "failed" in where:
            return
        logger, _, message = where.partition(": ")
        if logger.startswith("nightfold"):
            # identities, run labels and counts differ from line to line
            message = re.sub(r"\S*\d\S*", "#", message)
        note = f"{proc.role}: traceback logged by {logger}: {message[:100]}"
        if note not in self.result.anomalies:
            self.result.anomalies.append(note)

    def kill_all(self) -> None:
        if self.verifying is not None and self.verifying.poll() is None:
            self.verifying.kill()
            self.verifying.wait()
        for p in self.procs:
            if p.alive():
                with suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                with suppress(Exception):
                    p.popen.wait(timeout=10)

    def drop_queue(self) -> None:
        with suppress(Exception):
            import pika

            conn = pika.BlockingConnection(pika.URLParameters(self.env.broker_url.split("?")[0]))
            try:
                ch = conn.channel()
                ch.queue_delete(self.queue)
                ch.queue_delete(f"{self.queue}.dead")
            finally:
                conn.close()
