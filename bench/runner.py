"""Running nightfold for the benchmarks: a master and its workers as processes
(timed, with peak RSS and the run's stage times from the database), and the
worker's steps in this process (a synthetic claim, no lease).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    DAY,
    DEFAULT_CHUNK_ROWS,
    WORK,
    clean_env,
    clear_outputs,
    fresh_mariadb,
    fresh_queue,
    store_url,
    stored_digest,
    vm_hwm_mib,
    wait_rusage,
)
from nightfold.common.db.clock import seconds_between
from tests.support.pipeline import stop, wait_for

if TYPE_CHECKING:
    from nightfold.common.db.chunks import Claim
    from nightfold.common.keys import KeyRange
    from nightfold.common.states import Stage


# -- nightfold as processes ----------------------------------------------------------------


@dataclass
class NightfoldRun:
    """What one nightfold run (a master and its workers, as processes) measured."""

    label: str
    workers: int
    wall_s: float
    """From spawning the master to its exit (workers were already up)."""
    rows: int
    map_chunks: int
    plan_s: float
    """Run created -> mapping (the planner's sampling scan and the plan's transaction)."""
    map_s: float
    """Mapping -> reducing."""
    reduce_s: float
    worker_peak_rss_mib: list[float]
    master_peak_rss_mib: float
    digest: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    def asdict(self, timeline: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["rows_per_s"] = round(self.rows_per_s)
        if not timeline:
            out.pop("timeline")
        return out


def _seconds(a: Any, b: Any) -> float:
    """``seconds_between``, with ``nan`` for an unknown time (it stays in the JSON)."""
    secs = seconds_between(a, b)
    return float("nan") if secs is None else secs


def _events_at(engine: Any, run_id: int, kind: str) -> Any:
    from sqlalchemy import func, select

    from nightfold.common.db.models import RunEvent

    with engine.connect() as conn:
        return conn.execute(
            select(func.min(RunEvent.at)).where(RunEvent.run_id == run_id, RunEvent.kind == kind)
        ).scalar()


def run_facts(db_url: str) -> dict[str, Any]:
    """The latest run's stage times, rows and per-chunk timeline, from the database."""
    from sqlalchemy import select

    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.models import Chunk, Run

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            run = conn.execute(select(Run).order_by(Run.id.desc()).limit(1)).one()._mapping
            chunks = conn.execute(
                select(
                    Chunk.stage,
                    Chunk.idx,
                    Chunk.owner,
                    Chunk.attempt,
                    Chunk.claimed_at,
                    Chunk.done_at,
                    Chunk.rows_read,
                ).where(Chunk.run_id == run["id"])
            ).all()
        reducing_at = _events_at(engine, run["id"], "run_reducing")
    finally:
        engine.dispose()
    origin = run["created_at"]
    owners = sorted({c.owner for c in chunks if c.owner})
    timeline = [
        {
            "stage": c.stage,
            "idx": c.idx,
            "worker": owners.index(c.owner) if c.owner in owners else -1,
            "attempt": c.attempt,
            "start": round(_seconds(origin, c.claimed_at), 3),
            "end": round(_seconds(origin, c.done_at), 3),
            "rows": c.rows_read,
        }
        for c in sorted(chunks, key=lambda c: (c.stage != "map", c.idx))
    ]
    return {
        "state": run["state"],
        "rows": int(run["rows_read"]),
        "map_chunks": sum(1 for c in chunks if c.stage == "map"),
        "plan_s": _seconds(origin, run["started_at"]),
        "map_s": _seconds(run["started_at"], reducing_at),
        "reduce_s": _seconds(reducing_at, run["finished_at"]),
        "timeline": timeline,
    }


def workers_registered(db_url: str) -> int:
    from sqlalchemy import func, select

    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.models import Worker

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Worker)).scalar_one())
    except Exception:
        return 0
    finally:
        engine.dispose()


def spawn_nightfold(
    env: dict[str, str], logs: Path, name: str, *args: str
) -> subprocess.Popen[bytes]:
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "nightfold", *args], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def spawn_master(
    env: dict[str, str], logs: Path, name: str = "master", day: dt.date = DAY
) -> subprocess.Popen[bytes]:
    """A master process running the benchmark day (or ``day``)."""
    return spawn_nightfold(env, logs, name, "master", "run", "--day", day.isoformat())


def nightfold_env(db_url: str, broker: str, store: str, **settings: Any) -> dict[str, str]:
    """The environment of a run's processes: its services, INFO logs and ``settings``."""
    return clean_env(
        database_url=db_url, broker_url=broker, store_url=store, log_level="INFO", **settings
    )


@contextlib.contextmanager
def nightfold_workers(
    env: dict[str, str], logs: Path, workers: int, db_url: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``workers`` worker processes, registered before this yields, stopped after."""
    procs = [spawn_nightfold(env, logs, f"worker-{i}", "worker", "run") for i in range(workers)]
    try:
        wait_for(lambda: workers_registered(db_url) >= workers, 120, f"{workers} workers up")
        yield procs
    finally:
        stop(procs)


def run_nightfold(
    label: str,
    *,
    workers: int,
    db_url: str,
    broker: str,
    store: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    settings: dict[str, Any] | None = None,
    timeout: float = 900,
    check: bool = True,
    day: dt.date = DAY,
) -> NightfoldRun:
    """One run of the day: ``workers`` worker processes (started and registered
    first), then the master, timed from its spawn to its exit."""
    env = nightfold_env(db_url, broker, store, chunk_rows=chunk_rows, **(settings or {}))
    logs = WORK / "logs" / label
    with nightfold_workers(env, logs, workers, db_url) as procs:
        started = time.monotonic()
        master = spawn_master(env, logs, day=day)
        code, master_rss = wait_rusage(master, timeout)
        wall = time.monotonic() - started
        rss = [vm_hwm_mib(p.pid) or float("nan") for p in procs]
    if code != 0 and check:
        raise RuntimeError(f"{label}: master exited {code}; see {logs}/master.log")
    facts = run_facts(db_url)
    return NightfoldRun(
        label=label,
        workers=workers,
        wall_s=wall,
        rows=facts["rows"],
        map_chunks=facts["map_chunks"],
        plan_s=facts["plan_s"],
        map_s=facts["map_s"],
        reduce_s=facts["reduce_s"],
        worker_peak_rss_mib=[round(r, 1) for r in rss],
        master_peak_rss_mib=round(master_rss, 1),
        timeline=facts["timeline"],
    )


def run_nightfold_hbase(label: str, workers: int, **kw: Any) -> NightfoldRun:
    """A nightfold run on the real services: a fresh database and queue, the seeded day."""
    url = store_url()
    clear_outputs(url)
    with fresh_mariadb() as db_url, fresh_queue() as queue_url:
        run = run_nightfold(
            label, workers=workers, db_url=db_url, broker=queue_url, store=url, **kw
        )
    run.digest = stored_digest(url)
    return run


# -- the worker's steps in this process ------------------------------------------------------


class NoLease:
    """No lease to renew (no run in the database): the step's progress ticks go nowhere."""

    split_requested = False

    def tick(self, rows_read: int, last_key: bytes | None, *, force: bool = False) -> None:
        return None


class NoRecords:
    """No database either: segments are committed nowhere, and a reduce counts every
    partial row (each step here writes its partials once)."""

    def commit(self, seg: Any) -> None:
        return None

    def split(self, end: bytes, cut: bytes) -> int | None:
        return None

    def decline_split(self, reason: str) -> None:
        return None

    def committed(self) -> None:
        return None


def synthetic_claim(
    stage: Stage, idx: int, key_range: KeyRange, *, generation: int, owner: str
) -> Claim:
    """A claim on chunk ``idx`` of a ``merchant_daily`` run of the benchmark day that exists
    nowhere, for running ``worker.executor``'s steps directly; ``generation`` keeps its
    partials apart from real runs' (generation 1)."""
    from nightfold.common.db.chunks import Claim
    from nightfold.common.db.runs import RunInfo, RunParams
    from nightfold.common.states import RunState

    run = RunInfo(
        id=0,
        job="merchant_daily",
        day=DAY,
        generation=generation,
        state=RunState.MAPPING,
        owner=None,
        cancel_requested=False,
        params=RunParams(),
        error=None,
    )
    return Claim(0, run, stage, idx, key_range, owner=owner, attempt=1)
