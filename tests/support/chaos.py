"""The fault-injection harness: randomized trials of the real pipeline on the real
MariaDB, RabbitMQ and HBase, with processes killed, services restarted and the
queue polluted while a run is under way.

One **trial** is one day's run, isolated from every other trial: a MariaDB
database of its own, a private work queue (and dead-letter queue), and a day of
its own in a table prefix shared by the session (summaries are keyed by day, so a
day per trial keeps one trial's rows from masking another's losses). The trial
seeds a small day (2k-6k rows, ``seed_day`` with the trial's seed), starts two
workers and a master (``python -m nightfold``, configured only through
``NIGHTFOLD_*``), with short leases and small chunks, and injects its faults when
their moment comes. A moment is a condition on the database (the run's phase, how
many map chunks are done, which worker holds a claim, whether a queued chunk's
hint is unpublished), polled every few milliseconds, plus a random fraction drawn
from the trial's RNG. Then it waits for the masters to exit and checks:

- the outcome: succeeded (``verify`` passes), or for a poison chunk failed with
  that reason and then a ``--rerun`` after the fix succeeds, or cancelled, or (a
  database outage longer than the deadline) the master gives up with one clear
  line, exit 3, and a restarted master finishes the run;
- rows lost / counted twice: every group's ``orders + malformed`` in the stored
  summaries against the oracle's (``nightfold.common.verify``), whose total must
  equal the rows seeded;
- run_events: no chunk has two ``done`` events; the run's row counter equals the
  rows seeded; garbage messages all end in the dead-letter queue and nothing else
  does; SIGTERMed workers exit 0 holding no claim; a second master refuses with
  exit 5 and one line.

Everything random comes from ``NIGHTFOLD_CHAOS_SEED`` (printed): trial ``i`` of a
session is a pure function of (seed, i, lead kind), so its plan can be replayed
with ``python -m tests.support.chaos --seed S --trial I --lead KIND`` (timing on
a real machine is never replayable exactly; the plan and the moments are).

``python -m tests.support.chaos --trials 200 --report bench/results/chaos.json``
is ``make chaos``; ``tests/faults`` runs a short session in ``make test``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine, case, create_engine, func, select, text
from sqlalchemy.engine import make_url

from nightfold.common.db import runs as run_repo
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.db.models import Worker as WorkerRow
from nightfold.common.jobs import get_job, import_job_modules
from nightfold.common.keys import raw_key
from nightfold.common.seeding import seed_day
from nightfold.common.store import open_store
from nightfold.common.transport.messages import Hint
from nightfold.common.transport.rabbitmq import declare, queue_depth
from nightfold.common.verify import compare, compute_expected, read_stored
from tests.support.services import REPO, service_url, unique_name

# --------------------------------------------------------------------------- fault kinds

MASTER_KILLS = (
    "master_kill_planning",
    "master_kill_publish",
    "master_kill_map",
    "master_kill_stage_switch",
    "master_kill_finishing",
)
WORKER_FAULTS = ("worker_kill", "worker_term")
RESTARTS = ("restart_mariadb", "restart_rabbitmq", "restart_hbase_thrift")
MESSAGES = ("msg_duplicate", "msg_stale", "msg_reordered", "msg_garbage")
SCENARIOS = ("poison", "cancel", "outage_past_deadline")
KINDS = (*MASTER_KILLS, *WORKER_FAULTS, *RESTARTS, *MESSAGES, *SCENARIOS, "two_masters")
"""Every kind a session must inject (each one at least once in the short version)."""

SERVICE_OF = {
    "restart_mariadb": "mariadb",
    "restart_rabbitmq": "rabbitmq",
    "restart_hbase_thrift": "hbase-thrift",
}
# How often a kind is added to a trial as an extra (restarts cost seconds each).
EXTRA_WEIGHTS = {
    **dict.fromkeys(MASTER_KILLS, 3.0),
    "worker_kill": 4.0,
    "worker_term": 3.0,
    "restart_mariadb": 1.5,
    "restart_rabbitmq": 0.6,
    "restart_hbase_thrift": 1.0,
    **dict.fromkeys(MESSAGES, 2.0),
    "two_masters": 2.0,
}
# A poison trial must fail for the poison row alone: no fault that burns attempts.
POISON_COMPATIBLE = {
    "master_kill_planning",
    "master_kill_publish",
    "master_kill_map",
    *MESSAGES,
    "two_masters",
}
CANCEL_COMPATIBLE = {"master_kill_planning", "master_kill_publish", *MESSAGES, "two_masters"}
DEADLINE_COMPATIBLE = {"master_kill_planning", *MESSAGES, "worker_kill"}

# The run's phases, in order, as the database shows them.
PHASES = ("start", "planning", "map", "switch", "reduce", "finishing", "terminal")
TERMINAL = ("succeeded", "failed", "cancelled")

RECOVERY_DEFINITION = (
    "from the spawn of a restarted master (database clock) to the first run_events row "
    "its identity writes after master_acquired (a chunk queued, a lease taken back, a "
    "stage move or the run's end); when it writes none before exiting, to the first chunk "
    "done after its spawn"
)

GARBAGE = (
    b"",
    b"not json at all",
    b"\xff\xfe\x00\x01 binary",
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"v": 2, "run": 1, "chunk": 1, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": -5, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": "7", "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": 1.0, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": true, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": 1, "stage": "shuffle", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": 1, "stage": "map", "idx": 0',
    b"A" * 5000,
    pickle.dumps({"run": 1, "chunk": 1}),  # never unpickled: must be dead-lettered
)

BASE_DAY = dt.date(2031, 1, 1)


# --------------------------------------------------------------------------- plans


@dataclass
class Fault:
    """One fault of a trial: when it may fire, and what happened when it did."""

    kind: str
    window: tuple[str, str]
    """First and last phase in which it may fire; past the last one it is missed."""
    frac: float = 0.0
    """Share of the map chunks done before it fires (when its window starts in map)."""
    stage: str = "map"
    variant: str = ""
    delay: float = 0.0
    """Pause before the follow-up (a killed process's restart, a stopped service's start)."""
    fired: bool = False
    missed: bool = False
    observed: str = ""
    """The kind as observed when it fired (a master kill counts by the phase it hit)."""
    note: str = ""

    def describe(self) -> str:
        extra = f" {self.variant}" if self.variant else ""
        where = f"{self.window[0]}..{self.window[1]}" + (f"@{self.frac:.2f}" if self.frac else "")
        return f"{self.kind}{extra} [{where}]"


@dataclass
class TrialPlan:
    index: int
    session_seed: int
    lead: str
    seed: int
    day: dt.date
    rows: int
    salt_buckets: int
    chunk_rows: int
    reduce_buckets: int
    max_in_flight: int
    lease_seconds: int
    max_attempts: int
    scenario: str
    """normal | poison | cancel | outage_past_deadline"""
    faults: list[Fault]
    deadline_seconds: int = 4

    @property
    def job(self) -> str:
        return "poison_daily" if self.scenario == "poison" else "merchant_daily"

    def replay(self) -> str:
        return (
            f"python -m tests.support.chaos --seed {self.session_seed} --trial {self.index} "
            f"--lead {self.lead}"
        )

    def describe(self) -> str:
        faults = ", ".join(f.describe() for f in self.faults) or "-"
        return (
            f"trial {self.index} seed={self.session_seed}/{self.seed} day={self.day} "
            f"rows={self.rows} salt={self.salt_buckets} chunk_rows={self.chunk_rows} "
            f"reduce={self.reduce_buckets} in_flight={self.max_in_flight} "
            f"lease={self.lease_seconds}s attempts={self.max_attempts} "
            f"scenario={self.scenario}: {faults}"
        )


def lead_deck(session_seed: int, count: int) -> list[str]:
    """The lead kind of trials 0..count-1: every kind once per shuffled round."""
    rng = random.Random(f"nightfold-chaos-deck:{session_seed}")
    deck: list[str] = []
    while len(deck) < count:
        round_ = list(KINDS)
        rng.shuffle(round_)
        deck += round_
    return deck[:count]


def _compatible(kind: str, chosen: list[str], scenario: str) -> bool:
    if kind in chosen or kind in SCENARIOS:
        return False
    if scenario == "poison" and kind not in POISON_COMPATIBLE:
        return False
    if scenario == "cancel" and kind not in CANCEL_COMPATIBLE:
        return False
    if scenario == "outage_past_deadline" and kind not in DEADLINE_COMPATIBLE:
        return False
    # one service restart per trial
    return not (kind in RESTARTS and any(k in RESTARTS for k in chosen))


def _fault(kind: str, rng: random.Random) -> Fault:
    """A fault of ``kind`` with its moment drawn from ``rng``."""
    frac = round(rng.uniform(0.05, 0.7), 2)
    if kind == "master_kill_planning":
        return Fault(kind, ("planning", "planning"), delay=rng.uniform(0, 1.0))
    if kind == "master_kill_publish":
        return Fault(kind, ("map", "finishing"), delay=rng.uniform(0, 1.0))
    if kind == "master_kill_map":
        return Fault(kind, ("map", "map"), frac=frac, delay=rng.uniform(0, 1.5))
    if kind == "master_kill_stage_switch":
        return Fault(kind, ("switch", "switch"), delay=rng.uniform(0, 1.0))
    if kind == "master_kill_finishing":
        return Fault(kind, ("finishing", "terminal"), delay=rng.uniform(0, 1.0))
    if kind in WORKER_FAULTS:
        stage = "map" if rng.random() < 0.8 else "reduce"
        window = ("map", "map") if stage == "map" else ("switch", "reduce")
        return Fault(
            kind,
            window,
            frac=frac if stage == "map" else 0.0,
            stage=stage,
            variant="all" if rng.random() < 0.3 else "one",
            delay=rng.uniform(0, 1.0),
        )
    if kind in RESTARTS:
        if rng.random() < 0.75:
            return Fault(kind, ("map", "map"), frac=frac, variant="mid-map")
        return Fault(kind, ("switch", "reduce"), variant="mid-reduce")
    if kind == "msg_reordered":
        return Fault(kind, ("map", "map"), frac=round(rng.uniform(0.0, 0.3), 2))
    if kind in MESSAGES:
        if rng.random() < 0.7:
            return Fault(kind, ("map", "map"), frac=frac, variant="map")
        return Fault(kind, ("switch", "reduce"), variant="reduce")
    if kind == "two_masters":
        if rng.random() < 0.4:
            return Fault(kind, ("start", "start"), variant="at-start")
        return Fault(kind, ("map", "reduce"), frac=frac, variant="mid-run")
    if kind == "cancel":
        if rng.random() < 0.8:
            return Fault(kind, ("map", "map"), frac=frac, variant="mid-map")
        return Fault(kind, ("switch", "reduce"), variant="mid-reduce")
    if kind == "outage_past_deadline":
        return Fault(kind, ("map", "map"), frac=frac, variant="mariadb")
    raise ValueError(f"unknown fault kind {kind!r}")


def plan_trial(session_seed: int, index: int, lead: str, *, rows: tuple[int, int]) -> TrialPlan:
    """Trial ``index`` of a session: a pure function of its arguments."""
    if lead not in KINDS:
        raise ValueError(f"unknown fault kind {lead!r}; kinds: {', '.join(KINDS)}")
    rng = random.Random(f"nightfold-chaos:{session_seed}:{index}:{lead}")
    scenario = lead if lead in SCENARIOS else "normal"
    chosen = [lead]
    extras = rng.choices((0, 1, 2), weights=(0.3, 0.45, 0.25))[0]
    for _ in range(extras):
        options = [k for k in EXTRA_WEIGHTS if _compatible(k, chosen, scenario)]
        if not options:
            break
        chosen.append(rng.choices(options, weights=[EXTRA_WEIGHTS[k] for k in options])[0])
    faults = [_fault(k, rng) for k in chosen if k != "poison"]
    faults.sort(key=lambda f: (PHASES.index(f.window[0]), f.frac))
    n_rows = rng.randint(*rows)
    salt = rng.choice((4, 8, 16))
    map_chunks = rng.randint(12, 28)
    return TrialPlan(
        index=index,
        session_seed=session_seed,
        lead=lead,
        seed=rng.randrange(1, 2**31),
        day=BASE_DAY + dt.timedelta(days=index),
        rows=n_rows,
        salt_buckets=salt,
        chunk_rows=max(20, n_rows // map_chunks),
        reduce_buckets=rng.randint(2, 6),
        max_in_flight=rng.choice((2, 4, 8, 16)),
        lease_seconds=rng.choice((2, 3)),
        max_attempts=rng.choice((2, 3)) if scenario == "poison" else 8,
        scenario=scenario,
        faults=faults,
    )


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    role: str
    name: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    spawned_db: dt.datetime | None
    spawned: float
    signalled: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr_text(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def last_error_line(self) -> str:
        lines = [ln for ln in self.stderr_text().splitlines() if ln.startswith("nightfold: error")]
        return lines[-1] if lines else ""


def services_command(action: str, service: str, log: Path) -> tuple[int, float]:
    """``deploy/local/services ACTION SERVICE``; returns (exit code, seconds)."""
    env = dict(os.environ, NIGHTFOLD_PYTHON=sys.executable)
    started = time.monotonic()
    with log.open("ab") as fh:
        fh.write(f"\n$ deploy/local/services {action} {service}\n".encode())
        fh.flush()
        rc = subprocess.run(
            [str(REPO / "deploy" / "local" / "services"), action, service],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=400,
        ).returncode
    return rc, time.monotonic() - started


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def foreign_users() -> list[str]:
    """Command lines of nightfold and pytest processes this harness did not start:
    someone else's tests, which a service restart would break."""
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) in mine:
            continue  # a child of ours
        line = b" ".join(argv).decode(errors="replace").strip()
        if "python" in line and ("nightfold" in line or "pytest" in line):
            found.append(line[:160])
    return found


def wait_for_quiet(limit: float, say: Callable[[str], None]) -> None:
    """Before a trial that restarts a shared service, let others' tests finish first
    (up to ``limit`` seconds; then go ahead)."""
    deadline = time.monotonic() + limit
    others = foreign_users()
    if others:
        say(f"chaos: waiting up to {limit:.0f}s for other nightfold/pytest processes: {others[:3]}")
    while others and time.monotonic() < deadline:
        time.sleep(2)
        others = foreign_users()


# --------------------------------------------------------------------------- observing


@dataclass
class Snap:
    """The run as the database shows it at one instant."""

    run_id: int | None = None
    state: str | None = None
    owner: str | None = None
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    unpublished: int = 0
    claims: list[tuple[int, str, int]] = field(default_factory=list)
    """(owner pid, stage, chunk id) of every claimed chunk."""

    def total(self, stage: str) -> int:
        return sum(n for (s, _), n in self.counts.items() if s == stage)

    def n(self, stage: str, state: str) -> int:
        return self.counts.get((stage, state), 0)

    @property
    def phase(self) -> str:
        if self.state is None:
            return "start"
        if self.state in TERMINAL:
            return "terminal"
        if self.state == "planning":
            return "planning"
        if self.state == "mapping":
            total = self.total("map")
            return "switch" if total and self.n("map", "done") == total else "map"
        total = self.total("reduce")
        done = self.n("reduce", "done")
        if total and done == total:
            return "finishing"
        if done == 0 and self.n("reduce", "claimed") == 0:
            return "switch"
        return "reduce"

    @property
    def owner_pid(self) -> int | None:
        parts = (self.owner or "").split(":")
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def snapshot(engine: Engine, *, claims: bool = False) -> Snap:
    with engine.connect() as conn:
        run = conn.execute(
            select(Run.id, Run.state, Run.owner).order_by(Run.id.desc()).limit(1)
        ).first()
        if run is None:
            return Snap()
        snap = Snap(run_id=int(run[0]), state=str(run[1]), owner=run[2])
        rows = conn.execute(
            select(
                Chunk.stage,
                Chunk.state,
                func.count(),
                func.sum(case((Chunk.published_at.is_(None), 1), else_=0)),
            )
            .where(Chunk.run_id == snap.run_id)
            .group_by(Chunk.stage, Chunk.state)
        )
        for stage, state, n, unpublished in rows:
            snap.counts[(str(stage), str(state))] = int(n)
            if state == "queued":
                snap.unpublished += int(unpublished or 0)
        if claims:
            for owner, stage, chunk_id in conn.execute(
                select(Chunk.owner, Chunk.stage, Chunk.id).where(
                    Chunk.run_id == snap.run_id, Chunk.state == "claimed"
                )
            ):
                parts = (owner or "").split(":")
                if len(parts) == 3 and parts[1].isdigit():
                    snap.claims.append((int(parts[1]), str(stage), int(chunk_id)))
        return snap


def db_now(engine: Engine) -> dt.datetime | None:
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT CURRENT_TIMESTAMP(6)")).scalar()
    except Exception:
        return None
    return value if isinstance(value, dt.datetime) else None


# --------------------------------------------------------------------------- results


@dataclass
class TrialResult:
    plan: TrialPlan
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    outcome: str = ""
    runs_total: int = 0
    runs_as_expected: int = 0
    rows_expected: int = 0
    rows_lost: int = 0
    rows_double_counted: int = 0
    chunks_done_twice: int = 0
    recoveries: list[float] = field(default_factory=list)
    takeovers: list[float] = field(default_factory=list)
    restarts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    logs: str = ""

    def problem(self, text_: str) -> None:
        self.ok = False
        self.problems.append(text_)

    def faults_by_kind(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        if self.plan.scenario == "poison":
            counts["poison"] += 1
        for f in self.plan.faults:
            if f.fired and f.observed:
                counts[f.observed] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        return {
            "trial": self.plan.index,
            "seed": self.plan.seed,
            "lead": self.plan.lead,
            "scenario": self.plan.scenario,
            "faults": [
                {
                    "kind": f.kind,
                    "observed": f.observed or None,
                    "fired": f.fired,
                    "missed": f.missed,
                    **({"variant": f.variant} if f.variant else {}),
                    **({"note": f.note} if f.note else {}),
                }
                for f in self.plan.faults
            ],
            "outcome": self.outcome,
            "ok": self.ok,
            "rows": self.rows_expected,
            "rows_lost": self.rows_lost,
            "rows_double_counted": self.rows_double_counted,
            "recovery_s": [round(r, 3) for r in self.recoveries],
            "seconds": round(self.seconds, 1),
            **({"problems": self.problems} if self.problems else {}),
            **({"anomalies": self.anomalies} if self.anomalies else {}),
            **({"logs": self.logs} if self.logs else {}),
        }


class TrialTimeout(Exception):
    pass


# --------------------------------------------------------------------------- one trial


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


class Trial:
    POLL = 0.004

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
        self.master_restarts: list[Proc] = []
        self.cancelled = False
        self.outage_over = False
        self.verifying: subprocess.Popen[str] | None = None

    # -- plumbing ------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        p = self.plan
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
        env.update(
            NIGHTFOLD_DATABASE_URL=self.db_url,
            NIGHTFOLD_BROKER_URL=_with_query(self.env.broker_url, queue=self.queue),
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
        )
        if p.scenario == "poison":
            env["NIGHTFOLD_JOB_MODULES"] = "tests.support.jobs"
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

    # -- the trial -------------------------------------------------------------------
    def run(self) -> TrialResult:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log(self.plan.describe())
        try:
            with self._database():
                self.proc_env = self._base_env()
                self._seed()
                self._drive()
                self._assess()
        except TrialTimeout as exc:
            self.result.problem(f"hang: {exc}")
        except Exception as exc:
            self.result.problem(f"harness error: {type(exc).__name__}: {exc}")
            import traceback

            self.log(traceback.format_exc())
        finally:
            self._kill_all()
            self._drop_queue()
        self.result.seconds = time.monotonic() - self.started
        if self.result.ok and not self.result.anomalies and not self.env.keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.result.logs = str(self.dir)
        return self.result

    @contextmanager
    def _database(self) -> Iterator[None]:
        name = unique_name("nightfold_chaos")
        admin = create_engine(self.env.database_url)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}`"))
        self.db_url = (
            make_url(self.env.database_url).set(database=name).render_as_string(hide_password=False)
        )
        admin.dispose()
        self.engine = make_engine(self.db_url, pool_size=2)
        try:
            upgrade(self.engine)
            yield
        finally:
            self.engine.dispose()
            admin = create_engine(self.env.database_url)  # the server may have restarted
            try:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            except Exception as exc:
                self.log(f"could not drop {name}: {exc}")
            admin.dispose()

    def _seed(self) -> None:
        p = self.plan
        store = open_store(self.env.store_url)
        try:
            n = seed_day(store, p.day, p.rows, salt_buckets=p.salt_buckets, seed=p.seed)
            if p.scenario == "poison":
                salt = random.Random(p.seed).randrange(p.salt_buckets)
                key = raw_key(salt, p.day, "m000001", "POISON")
                store.put_many("nightfold_raw", [(key, {b"o:merchant": b"m000001"})])
                n += 1
        finally:
            store.close()
        self.result.rows_expected = n
        self.log(f"seeded {n} rows for {p.day}")

    def _drive(self) -> None:
        p = self.plan
        self.worker()
        self.worker()
        self.master()
        pending = list(p.faults)
        for f in pending:
            if f.window == ("start", "start"):  # two masters at once
                self.master()
                self._fired(f, "two_masters", "second master spawned with the first")
        pending = [f for f in pending if not f.fired]
        while True:
            self.check_time(f"driving (pending: {[f.kind for f in pending]})")
            want_claims = any(f.kind in WORKER_FAULTS for f in pending)
            snap = self.snap(claims=want_claims)
            if snap is None:
                continue
            for f in list(pending):
                if self._missed(f, snap):
                    f.missed = True
                    pending.remove(f)
                    self.log(f"missed {f.describe()} (phase now {snap.phase})")
                elif self._due(f, snap):
                    pending.remove(f)
                    self._fire(f, snap)
                    break  # the world changed: take a fresh snapshot
            if not self.masters_alive():
                for f in pending:
                    f.missed = True
                    self.log(f"missed {f.describe()}: no master left")
                break
            narrow = any(f.kind in MASTER_KILLS or f.kind in WORKER_FAULTS for f in pending)
            time.sleep(self.POLL if narrow else 0.02 if pending else 0.05)
        if p.scenario == "poison":
            self._poison_rerun()

    # -- when a fault fires ----------------------------------------------------------
    def _missed(self, f: Fault, snap: Snap) -> bool:
        last = PHASES.index(f.window[1])
        return PHASES.index(snap.phase) > last

    def _due(self, f: Fault, snap: Snap) -> bool:
        phase = PHASES.index(snap.phase)
        if phase < PHASES.index(f.window[0]):
            return False
        if snap.phase == "map" and f.frac:
            total = snap.total("map")
            if snap.n("map", "done") < max(1, math.ceil(f.frac * total)):
                return False
        if f.kind == "master_kill_publish":
            return snap.unpublished > 0
        if f.kind == "master_kill_finishing":
            return bool(self.masters_alive())
        if f.kind in WORKER_FAULTS:
            return self._victim(snap, f.stage) is not None
        return True

    def _victim(self, snap: Snap, stage: str) -> Proc | None:
        mine = {p.pid: p for p in self.workers_alive() if not p.signalled}
        for pid, st, _chunk in snap.claims:
            if st == stage and pid in mine:
                return mine[pid]
        return None

    def _fired(self, f: Fault, observed: str, note: str = "") -> None:
        f.fired = True
        f.observed = observed
        f.note = note
        self.log(f"fired {f.describe()} -> {observed} {note}")

    def _fire(self, f: Fault, snap: Snap) -> None:
        if f.kind in MASTER_KILLS:
            self._kill_master(f)
        elif f.kind in WORKER_FAULTS:
            self._signal_worker(f, snap)
        elif f.kind in RESTARTS:
            self._restart_service(f)
        elif f.kind in MESSAGES:
            self._publish_messages(f, snap)
        elif f.kind == "two_masters":
            proc = self.master()
            self._fired(f, "two_masters", f"second master pid {proc.pid} mid-run")
        elif f.kind == "cancel":
            self._cancel(f, snap)
        elif f.kind == "outage_past_deadline":
            self._outage(f)
        else:
            raise ValueError(f.kind)

    def _kill_master(self, f: Fault) -> None:
        rng = random.Random(f"{self.plan.seed}:{f.kind}")
        if f.kind == "master_kill_planning":
            time.sleep(rng.uniform(0, 0.05))
        alive = self.masters_alive()
        before = self.snap()
        owner = before.owner_pid if before else None
        target = next((p for p in alive if p.pid == owner), alive[0] if alive else None)
        if target is None:
            f.missed = True
            return
        target.signalled = "SIGKILL"
        os.kill(target.pid, signal.SIGKILL)
        target.popen.wait()
        after = None
        while after is None:
            self.check_time("reading the state after a master kill")
            after = self.snap()
        observed = _kill_phase(after)
        note = f"killed master pid {target.pid} in {after.state}"
        if observed == "master_kill_planning" and after.total("map") + after.total("reduce"):
            self.result.problem(
                "master killed mid-plan left a partial plan (chunks while planning)"
            )
        if after.state in ("mapping", "reducing") and (
            after.total("map") + after.total("reduce") == 0
        ):
            self.result.problem(f"run is {after.state} without chunks after a master kill")
        self._fired(f, observed, note)
        time.sleep(f.delay)
        # Restart it, as cron or an operator would (a no-op when the run already ended).
        self.master_restarts.append(self.master())

    def _signal_worker(self, f: Fault, snap: Snap) -> None:
        """SIGKILL (or SIGTERM) a worker holding a claim, or with variant "all" every
        worker at once; then start as many new ones."""
        victim = self._victim(snap, f.stage)
        assert victim is not None
        victims = [victim]
        if f.variant == "all":
            victims += [w for w in self.workers_alive() if w is not victim and not w.signalled]
        held = {w.pid: [c for pid, _, c in snap.claims if pid == w.pid] for w in victims}
        sig = signal.SIGKILL if f.kind == "worker_kill" else signal.SIGTERM
        for w in victims:
            w.signalled = sig.name
            os.kill(w.pid, sig)
        if f.kind == "worker_kill":
            for w in victims:
                w.popen.wait()
            after = None
            while after is None:
                self.check_time("reading claims after SIGKILL")
                after = self.snap(claims=True)
            owners = {pid for pid, _, _ in after.claims}
            mid = [w.pid for w in victims if w.pid in owners]
            observed = "worker_kill" if mid else "worker_kill_between_chunks"
            pids = ", ".join(str(w.pid) for w in victims)
            self._fired(f, observed, f"pid {pids} in {f.stage}, {len(mid)} mid-chunk")
        else:
            codes = []
            for w in victims:
                rc = self.wait_exit(w, 40)
                codes.append(rc)
                if rc is None:
                    self.result.problem(f"worker pid {w.pid} did not exit within 40s of SIGTERM")
                elif rc != 0:
                    self.result.problem(f"worker pid {w.pid} exited {rc} after SIGTERM")
            after = None
            while after is None:
                self.check_time("reading claims after SIGTERM")
                after = self.snap(claims=True)
            for w in victims:
                if any(pid == w.pid for pid, _, _ in after.claims):
                    self.result.problem(f"worker pid {w.pid} exited on SIGTERM holding a claim")
                self._check_finished(w, held[w.pid])
            pids = ", ".join(str(w.pid) for w in victims)
            self._fired(f, "worker_term", f"pid {pids} in {f.stage}, exit {codes}")
        time.sleep(f.delay)
        for _ in victims:
            self.worker()

    def _wait_started(self) -> None:
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

    def _check_finished(self, victim: Proc, chunk_ids: list[int]) -> None:
        """A SIGTERMed worker finishes the chunk it holds (the grace period is ample)."""
        assert self.engine is not None
        if not chunk_ids:
            return
        with self.engine.connect() as conn:
            events = conn.execute(
                select(RunEvent.chunk_id, RunEvent.kind).where(
                    RunEvent.chunk_id.in_(chunk_ids),
                    RunEvent.actor.like(f"%:{victim.pid}:%"),
                    RunEvent.kind.in_(("done", "released", "failed")),
                )
            ).all()
        done = {int(c) for c, k in events if k == "done"}
        for cid in chunk_ids:
            if cid not in done:
                kinds = [str(k) for c, k in events if c == cid] or ["nothing"]
                self.result.problem(
                    f"worker pid {victim.pid} got SIGTERM holding chunk {cid} and did not "
                    f"finish it ({', '.join(kinds)})"
                )

    def _restart_service(self, f: Fault) -> None:
        self._wait_started()
        service = SERVICE_OF[f.kind]
        rc, took = services_command("restart", service, self.dir / "services.log")
        self.result.restarts[service] = took
        if rc != 0:
            self.result.problem(f"deploy/local/services restart {service} failed (exit {rc})")
        self._fired(f, f.kind, f"{f.variant}, {took:.1f}s")

    def _publish_messages(self, f: Fault, snap: Snap) -> None:
        assert self.engine is not None and snap.run_id is not None
        rng = random.Random(f"{self.plan.seed}:{f.kind}:{f.variant}")
        with self.engine.connect() as conn:
            chunks = [
                (int(r[0]), str(r[1]), int(r[2]), str(r[3]))
                for r in conn.execute(
                    select(Chunk.id, Chunk.stage, Chunk.idx, Chunk.state).where(
                        Chunk.run_id == snap.run_id
                    )
                )
            ]
        run_id = snap.run_id

        def hint(c: tuple[int, str, int, str]) -> bytes:
            return Hint(run_id, c[0], c[1], c[2]).encode()

        bodies: list[bytes] = []
        if f.kind == "msg_duplicate":
            live = [c for c in chunks if c[3] in ("queued", "claimed")] or chunks
            for c in live:
                bodies += [hint(c)] * rng.randint(2, 4)
        elif f.kind == "msg_stale":
            done = [c for c in chunks if c[3] == "done"]
            bodies += [hint(c) for c in done]
            top = max(c[0] for c in chunks)
            bodies += [Hint(run_id, top + i, "map", i).encode() for i in range(1, 4)]
            bodies += [Hint(run_id + 7, top + 50, "reduce", 0).encode()]
            bodies += [hint(c) for c in chunks if c[1] == "reduce" and c[3] == "pending"]
        elif f.kind == "msg_reordered":
            shuffled = list(chunks)
            rng.shuffle(shuffled)
            bodies += [hint(c) for c in shuffled]
        else:
            bodies = rng.sample(GARBAGE, rng.randint(4, len(GARBAGE)))
            self.garbage_sent += len(bodies)
        if f.kind != "msg_garbage":
            rng.shuffle(bodies)
        _publish_raw(_with_query(self.env.broker_url, queue=self.queue), self.queue, bodies)
        self._fired(f, f.kind, f"{len(bodies)} messages in {snap.phase}")

    def _cancel(self, f: Fault, snap: Snap) -> None:
        assert self.engine is not None and snap.run_id is not None
        with self.engine.begin() as conn:
            self.cancelled = run_repo.request_cancel(conn, snap.run_id, "chaos")
        self._fired(
            f, "cancel", f"in {snap.phase}" + ("" if self.cancelled else " (run already ended)")
        )

    def _outage(self, f: Fault) -> None:
        """Stop MariaDB longer than the master's deadline: it must give up with one
        clear line (exit 3); then start MariaDB and a master, which finishes the run."""
        log = self.dir / "services.log"
        self._wait_started()
        masters = self.masters_alive()
        rc, took = services_command("stop", "mariadb", log)
        if rc != 0:
            self.result.problem(f"deploy/local/services stop mariadb failed (exit {rc})")
        limit = self.plan.deadline_seconds + 40
        t0 = time.monotonic()
        for m in masters:
            left = max(0.1, limit - (time.monotonic() - t0))
            code = self.wait_exit(m, left)
            if code is None:
                self.result.problem(
                    f"master pid {m.pid} still running {limit}s into a database outage longer "
                    f"than its {self.plan.deadline_seconds}s deadline"
                )
                continue
            line = m.last_error_line()
            waited = time.monotonic() - t0
            if code != 3 or "unavailable" not in line or "gave up" not in line:
                self.result.problem(
                    f"master pid {m.pid} exited {code} in a database outage, expected 3 with "
                    f"'unavailable ... gave up': {line or m.stderr_text()[-300:]}"
                )
            for where in _tracebacks(m.stderr_text()):
                self._traceback(m, where)
            self.log(f"master pid {m.pid} gave up after {waited:.1f}s: {line}")
        rc, _ = services_command("start", "mariadb", log)
        self.outage_over = True
        down = time.monotonic() - t0 + took
        self.result.restarts["mariadb(outage)"] = down
        if rc != 0:
            self.result.problem(f"deploy/local/services start mariadb failed (exit {rc})")
        self._fired(f, "outage_past_deadline", f"master gave up; database down {down:.1f}s")
        self.master_restarts.append(self.master())

    def _poison_rerun(self) -> None:
        """After the poison run failed: the fix (workers that skip nothing), then --rerun."""
        self._wait_started()
        for w in self.workers_alive():
            w.signalled = "SIGTERM"
            w.popen.send_signal(signal.SIGTERM)
        for w in [p for p in self.procs if p.role == "worker"]:
            if self.wait_exit(w, 40) is None:
                self.result.problem(f"worker pid {w.pid} did not stop within 40s of SIGTERM")
        self.proc_env = dict(self.proc_env, NIGHTFOLD_TEST_POISON_FIXED="1")
        self.worker()
        self.worker()
        rerun = self.master("--rerun")
        while rerun.alive():
            self.check_time("waiting for the rerun after the fix")
            time.sleep(0.1)

    def _state(self, run_id: int | None = None) -> tuple[int, str, str | None, int] | None:
        assert self.engine is not None
        with self.engine.connect() as conn:
            q = select(Run.id, Run.state, Run.error, Run.rows_read).order_by(Run.id.desc())
            if run_id is not None:
                q = q.where(Run.id == run_id)
            row = conn.execute(q.limit(1)).first()
        return (int(row[0]), str(row[1]), row[2], int(row[3] or 0)) if row else None

    # -- after the run ---------------------------------------------------------------
    def _stop_workers(self) -> None:
        broker = _with_query(self.env.broker_url, queue=self.queue)
        if self.garbage_sent:  # let the workers drain the queue into the dead letters
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                with suppress(Exception):
                    work, dead = queue_depth(broker)
                    if work == 0 and dead >= self.garbage_sent:
                        break
                time.sleep(0.2)
        self._wait_started()  # a worker SIGTERMed before it installed its handlers dies of it
        for w in self.workers_alive():
            w.signalled = "SIGTERM(end)"
            w.popen.send_signal(signal.SIGTERM)
        for w in [p for p in self.procs if p.role == "worker"]:
            rc = self.wait_exit(w, 40)
            if rc is None:
                self.result.problem(f"worker pid {w.pid} did not stop within 40s of SIGTERM")
            elif rc != 0 and w.signalled != "SIGKILL":
                self.result.problem(f"worker pid {w.pid} exited {rc} on SIGTERM")
        for w in [p for p in self.procs if p.role == "worker"]:
            for where in _tracebacks(w.stderr_text()):
                self._traceback(w, where)
        if self.garbage_sent:
            try:
                work, dead = queue_depth(broker)
            except Exception as exc:
                self.result.anomalies.append(f"cannot read queue depth: {exc}")
            else:
                if dead != self.garbage_sent:
                    self.result.problem(
                        f"{self.garbage_sent} garbage messages sent, {dead} dead-lettered "
                        f"({work} left in the work queue)"
                    )

    def _assess(self) -> None:
        p, r = self.plan, self.result
        assert self.engine is not None
        last_state = self._state()
        if last_state is not None and last_state[1] == "succeeded":
            self._start_verify()  # the summaries are final: verify while the workers stop
        self._stop_workers()
        masters = [m for m in self.procs if m.role == "master"]
        codes = {m.pid: m.popen.returncode for m in masters}
        r.outcome = ""
        with self.engine.connect() as conn:
            runs = conn.execute(
                select(Run.id, Run.state, Run.error, Run.rows_read, Run.generation).order_by(Run.id)
            ).all()
        if not runs:
            r.problem("no run was created")
            return
        states = [str(row[1]) for row in runs]
        r.outcome = "+".join(states)
        r.runs_total = len(runs)
        expected_final = "succeeded"
        ok_codes = {0}
        if p.scenario == "poison":
            first = runs[0]
            reason = str(first[2] or "")
            want = f"dead after {p.max_attempts} attempts"
            if str(first[1]) == "failed" and want in reason and "poison row" in reason:
                r.runs_as_expected += 1
            else:
                r.problem(f"poison run ended {first[1]} ({reason!r}), expected failed: {want}")
            self._check_poison_events(int(first[0]))
            ok_codes = {0, 6}
            if len(runs) != 2:
                r.problem(f"expected the failed run and its rerun, found {len(runs)} runs")
        elif p.scenario == "cancel" and self.cancelled:
            expected_final = "cancelled"
            ok_codes = {6}
        elif p.scenario == "outage_past_deadline":
            ok_codes = {0, 3}
        last = runs[-1]
        if str(last[1]) == expected_final:
            r.runs_as_expected += 1
        else:
            r.problem(f"run {last[0]} ended {last[1]} ({last[2]!r}), expected {expected_final}")
        # masters: one clear line for a conflict, the expected code otherwise
        for m in masters:
            code = codes[m.pid]
            if m.signalled == "SIGKILL":
                continue
            for where in _tracebacks(m.stderr_text()):
                self._traceback(m, where)
            if code == 5:
                line = m.last_error_line()
                if "owned by master" not in line and "another master took over" not in line:
                    r.problem(f"{m.name} exited 5 without saying why: {line!r}")
                continue
            if code not in ok_codes:
                r.problem(f"{m.name} (pid {m.pid}) exited {code}: {m.last_error_line()!r}")
        if not any(codes[m.pid] == 0 for m in masters) and expected_final == "succeeded":
            r.problem("no master exited 0")
        self._check_one_owner(int(runs[0][0]))
        per_chunk = _done_events_per_chunk(self.engine)
        twice = {c: n for c, n in per_chunk.items() if n > 1}
        r.chunks_done_twice = len(twice)
        if twice:
            r.problem(f"chunks done more than once: {twice}")
        self._recovery()
        if str(last[1]) == "succeeded":
            self._check_rows(int(last[3] or 0))

    def _traceback(self, proc: Proc, where: str) -> None:
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

    def _check_one_owner(self, run_id: int) -> None:
        """Two masters started for one run: the second refuses. Unless a master was killed
        or an outage let a heartbeat go stale, exactly one master ever acquires the run."""
        faults = {f.kind for f in self.plan.faults if f.fired}
        if "two_masters" not in faults or faults & {*MASTER_KILLS, *RESTARTS, *SCENARIOS}:
            return
        assert self.engine is not None
        with self.engine.connect() as conn:
            actors = set(
                conn.execute(
                    select(RunEvent.actor).where(
                        RunEvent.run_id == run_id, RunEvent.kind == "master_acquired"
                    )
                ).scalars()
            )
        if len(actors) != 1:
            self.result.problem(f"two masters started, {len(actors)} acquired the run: {actors}")

    def _check_poison_events(self, run_id: int) -> None:
        assert self.engine is not None
        with self.engine.connect() as conn:
            kinds = Counter(
                str(k)
                for (k,) in conn.execute(
                    select(RunEvent.kind).where(
                        RunEvent.run_id == run_id, RunEvent.kind.in_(("failed", "dead"))
                    )
                )
            )
        want = Counter(failed=self.plan.max_attempts - 1, dead=1)
        if kinds != want:
            self.result.problem(f"poison run events {dict(kinds)}, expected {dict(want)}")

    def _start_verify(self) -> None:
        """``nightfold verify`` for the trial's day, in the background."""
        self.verifying = subprocess.Popen(
            [sys.executable, "-m", "nightfold", "verify", "--day", self.plan.day.isoformat()],
            env=self.proc_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )

    def _check_rows(self, run_rows: int) -> None:
        """Rows lost / counted twice, group by group, against the oracle; and verify."""
        p, r = self.plan, self.result
        if self.verifying is None:
            self._start_verify()
        assert self.verifying is not None
        try:
            out, _ = self.verifying.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            self.verifying.kill()
            out, _ = self.verifying.communicate()
        (self.dir / "verify.out").write_text(out)
        if self.verifying.returncode != 0 or "OK" not in out:
            r.problem(f"verify failed (exit {self.verifying.returncode}): {out[-600:]}")
        if p.scenario == "poison":
            import_job_modules("tests.support.jobs")
        job = get_job(p.job)
        store = open_store(self.env.store_url)
        try:
            with _poison_fixed():
                expected = compute_expected(store, job, p.day, p.salt_buckets)
            stored = read_stored(store, job, p.day)
        finally:
            store.close()

        def rows_of(cells: dict[bytes, bytes]) -> int:
            return int(cells.get(b"s:orders", b"0")) + int(cells.get(b"s:malformed", b"0"))

        total = sum(rows_of(c) for c in expected.values())
        if total != r.rows_expected:
            r.problem(f"the oracle counts {total} rows, {r.rows_expected} were seeded")
        for group in expected.keys() | stored.keys():
            delta = rows_of(stored.get(group, {})) - rows_of(expected.get(group, {}))
            if delta < 0:
                r.rows_lost -= delta
            else:
                r.rows_double_counted += delta
        if r.rows_lost or r.rows_double_counted:
            diffs = compare(expected, stored)[:5]
            r.problem(
                f"{r.rows_lost} rows lost, {r.rows_double_counted} counted twice: "
                + "; ".join(str(d) for d in diffs)
            )
        if run_rows != r.rows_expected:
            r.problem(f"the run's rows_read is {run_rows}, {r.rows_expected} rows were seeded")

    def _recovery(self) -> None:
        """Restart -> first progress of each restarted master (see RECOVERY_DEFINITION)."""
        assert self.engine is not None
        for m in self.master_restarts:
            if m.spawned_db is None:
                continue
            with self.engine.connect() as conn:
                acquired = conn.execute(
                    select(RunEvent.actor, RunEvent.at)
                    .where(
                        RunEvent.kind == "master_acquired",
                        RunEvent.actor.like(f"%:{m.pid}:%"),
                        RunEvent.at >= m.spawned_db,
                    )
                    .order_by(RunEvent.id)
                    .limit(1)
                ).first()
                if acquired is None:
                    continue
                actor, acquired_at = acquired
                first = conn.execute(
                    select(func.min(RunEvent.at)).where(
                        RunEvent.actor == actor,
                        RunEvent.kind != "master_acquired",
                        RunEvent.at >= acquired_at,
                    )
                ).scalar()
                if first is None:
                    first = conn.execute(
                        select(func.min(RunEvent.at)).where(
                            RunEvent.kind == "done", RunEvent.at >= m.spawned_db
                        )
                    ).scalar()
            self.result.takeovers.append((acquired_at - m.spawned_db).total_seconds())
            if first is not None:
                self.result.recoveries.append((first - m.spawned_db).total_seconds())

    def _kill_all(self) -> None:
        if self.verifying is not None and self.verifying.poll() is None:
            self.verifying.kill()
            self.verifying.wait()
        for p in self.procs:
            if p.alive():
                with suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                with suppress(Exception):
                    p.popen.wait(timeout=10)

    def _drop_queue(self) -> None:
        with suppress(Exception):
            import pika

            conn = pika.BlockingConnection(pika.URLParameters(self.env.broker_url.split("?")[0]))
            try:
                ch = conn.channel()
                ch.queue_delete(self.queue)
                ch.queue_delete(f"{self.queue}.dead")
            finally:
                conn.close()


_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} +(\w+) +(\S+?)\[\d+\]: (.*)$")


def _tracebacks(log_text: str) -> list[str]:
    """Where each traceback in a process's stderr comes from: the log record that
    carries it (``logger: message``), or "(no log record)" for an uncaught one."""
    found = []
    header: str | None = None
    for line in log_text.splitlines():
        m = _RECORD.match(line)
        if m:
            header = f"{m.group(2)}: {m.group(3)}"
        elif line.startswith("Exception in thread"):  # threading's excepthook: uncaught
            header = None
        elif line.startswith("Traceback"):
            found.append(header[:200] if header else "(no log record)")
    return found


@contextmanager
def _poison_fixed() -> Iterator[None]:
    """The oracle runs after the fix (``tests.support.jobs`` reads the flag per batch)."""
    before = os.environ.get("NIGHTFOLD_TEST_POISON_FIXED")
    os.environ["NIGHTFOLD_TEST_POISON_FIXED"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["NIGHTFOLD_TEST_POISON_FIXED"]
        else:
            os.environ["NIGHTFOLD_TEST_POISON_FIXED"] = before


def _kill_phase(snap: Snap) -> str:
    """Which master-kill kind a kill was, judged from the frozen run after it."""
    if snap.state in (None, "planning"):
        return "master_kill_planning"
    if snap.state in TERMINAL:
        return "master_kill_finishing"
    if snap.unpublished > 0:
        return "master_kill_publish"
    phase = snap.phase
    if phase == "map":
        return "master_kill_map"
    if phase == "switch":
        return "master_kill_stage_switch"
    if phase == "finishing":
        return "master_kill_finishing"
    return "master_kill_reduce"


def _with_query(url: str, **options: str) -> str:
    """``url`` with query options added or replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | options
    return urlunsplit(parts._replace(query=urlencode(query)))


def _publish_raw(url: str, queue: str, bodies: list[bytes]) -> None:
    """Publish bodies straight onto the work queue, as any client could."""
    import pika

    params = pika.URLParameters(url.split("?", 1)[0])
    params.socket_timeout = 10
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        declare(ch, queue)
        props = pika.BasicProperties(delivery_mode=2)
        for body in bodies:
            ch.basic_publish(exchange="", routing_key=queue, body=body, properties=props)
    finally:
        conn.close()


def _done_events_per_chunk(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunEvent.chunk_id, func.count())
            .where(RunEvent.kind == "done")
            .group_by(RunEvent.chunk_id)
        )
        return {int(c): int(n) for c, n in rows}


# --------------------------------------------------------------------------- sessions


@dataclass
class SessionConfig:
    trials: int = 20
    max_trials: int | None = None
    """With ``cover_all``: more trials until every kind was injected, up to this many."""
    cover_all: bool = True
    seed: int | None = None
    report: Path = REPO / ".nightfold" / "chaos-short.json"
    logs: Path | None = None
    rows: tuple[int, int] = (2000, 6000)
    keep_logs: bool = False
    only_trial: int | None = None
    only_lead: str | None = None
    time_budget: float | None = None
    """Stop adding make-up trials after this many seconds."""
    quiet_wait: float = float(os.environ.get("NIGHTFOLD_CHAOS_QUIET_WAIT", "120"))
    """Before restarting a shared service, wait this long for others' tests to end."""


@dataclass
class SessionReport:
    data: dict[str, Any]
    results: list[TrialResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def resolve_seed(seed: int | None) -> int:
    if seed is not None:
        return seed
    env = os.environ.get("NIGHTFOLD_CHAOS_SEED")
    return int(env) if env else random.SystemRandom().randrange(1, 10**9)


def run_session(cfg: SessionConfig, say: Callable[[str], None] = print) -> SessionReport:
    seed = resolve_seed(cfg.seed)
    database_url = service_url("NIGHTFOLD_DATABASE_URL")
    broker_url = service_url("NIGHTFOLD_BROKER_URL")
    store_base = service_url("NIGHTFOLD_STORE_URL")
    if not (database_url and broker_url and store_base):
        raise RuntimeError("the services are not configured: run `make services-up` first")
    prefix = unique_name("chaos")
    logs = cfg.logs or REPO / ".nightfold" / "chaos" / f"{time.strftime('%Y%m%d-%H%M%S')}-{seed}"
    logs.mkdir(parents=True, exist_ok=True)
    env = Env(
        database_url=database_url,
        broker_url=broker_url,
        store_url=_with_query(store_base, table_prefix=prefix),
        logs=logs,
        keep_logs=cfg.keep_logs,
    )
    say(f"chaos: NIGHTFOLD_CHAOS_SEED={seed} (replay the session with it), logs in {logs}")
    started = time.monotonic()
    results: list[TrialResult] = []
    covered: Counter[str] = Counter()
    try:
        if cfg.only_trial is not None:
            lead = cfg.only_lead or lead_deck(seed, cfg.only_trial + 1)[cfg.only_trial]
            plans: Iterator[TrialPlan] = iter(
                [plan_trial(seed, cfg.only_trial, lead, rows=cfg.rows)]
            )
        else:
            plans = _plans(seed, cfg, covered, started)
        for plan in plans:
            if any(f.kind in RESTARTS or f.kind == "outage_past_deadline" for f in plan.faults):
                wait_for_quiet(cfg.quiet_wait, say)
            say(f"chaos: {plan.describe()}")
            result = Trial(plan, env, say).run()
            results.append(result)
            covered.update(result.faults_by_kind())
            verdict = "ok" if result.ok else "UNEXPECTED"
            say(
                f"chaos: trial {plan.index} {verdict} in {result.seconds:.1f}s: "
                f"{result.outcome}, injected {dict(result.faults_by_kind())}"
                + (f"; problems: {result.problems}" if result.problems else "")
                + (f"; replay: {plan.replay()}" if not result.ok else "")
            )
    finally:
        _drop_prefix(store_base, prefix)
    wall = time.monotonic() - started
    data = _report(seed, results, wall, logs)
    cfg.report.parent.mkdir(parents=True, exist_ok=True)
    cfg.report.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    say(
        f"chaos: {data['trials']} trials in {wall:.0f}s, {data['runs_as_expected']}/"
        f"{data['runs_total']} runs as expected, rows lost {data['rows_lost']}, counted twice "
        f"{data['rows_double_counted']}, recovery p50 {data['recovery_s_p50']}s max "
        f"{data['recovery_s_max']}s; report {cfg.report}"
    )
    return SessionReport(data, results)


def _plans(
    seed: int, cfg: SessionConfig, covered: Counter[str], started: float
) -> Iterator[TrialPlan]:
    for i, lead in enumerate(lead_deck(seed, cfg.trials)):
        yield plan_trial(seed, i, lead, rows=cfg.rows)
    if not cfg.cover_all:
        return
    index = cfg.trials
    limit = cfg.max_trials if cfg.max_trials is not None else cfg.trials * 2
    while index < limit:
        if cfg.time_budget is not None and time.monotonic() - started > cfg.time_budget:
            return
        missing = [k for k in KINDS if covered[k] == 0]
        if not missing:
            return
        yield plan_trial(seed, index, missing[0], rows=cfg.rows)
        index += 1


def _report(seed: int, results: list[TrialResult], wall: float, logs: Path) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for r in results:
        faults.update(r.faults_by_kind())
        missed.update(f.kind for f in r.plan.faults if f.missed)
    recoveries = sorted(x for r in results for x in r.recoveries)
    takeovers = sorted(x for r in results for x in r.takeovers)
    restarts: dict[str, list[float]] = {}
    for r in results:
        for service, took in r.restarts.items():
            restarts.setdefault(service, []).append(took)
    return {
        "seed": seed,
        "trials": len(results),
        "trials_as_expected": sum(r.ok for r in results),
        "faults_by_kind": dict(sorted(faults.items())),
        "faults_planned_but_missed": dict(sorted(missed.items())),
        "kinds_not_covered": [k for k in KINDS if faults[k] == 0],
        "runs_total": sum(r.runs_total for r in results),
        "runs_as_expected": sum(r.runs_as_expected for r in results),
        "rows_seeded": sum(r.rows_expected for r in results),
        "rows_lost": sum(r.rows_lost for r in results),
        "rows_double_counted": sum(r.rows_double_counted for r in results),
        "chunks_done_twice": sum(r.chunks_done_twice for r in results),
        "recovery_s_p50": round(statistics.median(recoveries), 3) if recoveries else None,
        "recovery_s_max": round(max(recoveries), 3) if recoveries else None,
        "recovery_samples": len(recoveries),
        "recovery_definition": RECOVERY_DEFINITION,
        "takeover_s_p50": round(statistics.median(takeovers), 3) if takeovers else None,
        "service_restart_s": {
            s: {"count": len(v), "p50": round(statistics.median(v), 1), "max": round(max(v), 1)}
            for s, v in sorted(restarts.items())
        },
        "wall_s": round(wall, 1),
        "trial_s_p50": round(statistics.median(r.seconds for r in results), 1) if results else None,
        "outcomes": dict(Counter(r.outcome for r in results)),
        "unexpected": [r.summary() for r in results if not r.ok],
        "anomalies": dict(Counter(a for r in results for a in r.anomalies).most_common()),
        "trials_with_anomalies": [r.plan.index for r in results if r.anomalies],
        "logs": str(logs),
        "trial_details": [r.summary() for r in results],
    }


def _drop_prefix(store_base: str, prefix: str) -> None:
    import happybase

    from nightfold.common.store import HBaseURL, parse_store_url

    spec = parse_store_url(store_base)
    assert isinstance(spec, HBaseURL)
    with suppress(Exception):
        conn = happybase.Connection(spec.host, spec.port, table_prefix=prefix, timeout=60_000)
        try:
            for table in conn.tables():
                conn.delete_table(table, disable=True)
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.chaos", description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="default: NIGHTFOLD_CHAOS_SEED")
    parser.add_argument("--report", type=Path, default=REPO / "bench" / "results" / "chaos.json")
    parser.add_argument("--logs", type=Path, default=None)
    parser.add_argument("--trial", type=int, default=None, help="replay one trial of --seed")
    parser.add_argument("--lead", choices=KINDS, default=None, help="its lead kind")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    cfg = SessionConfig(
        trials=args.trials,
        max_trials=args.max_trials,
        seed=args.seed,
        report=args.report,
        logs=args.logs,
        keep_logs=args.keep_logs,
        only_trial=args.trial,
        only_lead=args.lead,
    )
    report = run_session(cfg)
    data = report.data
    good = report.ok and data["rows_lost"] == 0 and data["rows_double_counted"] == 0
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
