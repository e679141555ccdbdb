"""Read-only views of runs for ``status``: progress, throughput, workers, slow chunks."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from nightfold.common.db import workers as worker_repo
from nightfold.common.db.chunks import counts_by_stage
from nightfold.common.db.clock import db_now, seconds_between
from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.db.runs import list_runs
from nightfold.common.states import TERMINAL_RUN_STATES


@dataclass
class RunStatus:
    id: int
    label: str
    state: str
    cancel_requested: bool
    error: str | None
    chunks: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_read: int = 0
    rows_malformed: int = 0
    elapsed_s: float | None = None
    rows_per_s: float | None = None
    slowest: list[dict[str, Any]] = field(default_factory=list)
    master: dict[str, Any] = field(default_factory=dict)
    """owner, last_owner, heartbeat_age_s (database clock), stale_after_s."""
    stalled: bool = False
    job: str = ""
    day: str = ""
    """Unfinished with no live master: nothing moves it on until one starts."""


def run_status(
    conn: Connection, *, day: dt.date | None, limit: int = 5, stale_seconds: float = 30.0
) -> list[RunStatus]:
    """The latest ``limit`` runs; a run is ``stalled`` when it is unfinished and its
    master's heartbeat is older than ``stale_seconds`` (or it has no master)."""
    now = conn.execute(select(db_now())).scalar_one()
    out: list[RunStatus] = []
    for run in list_runs(conn, day=day, limit=limit):
        st = RunStatus(run.id, run.label, run.state.value, run.cancel_requested, run.error)
        st.job, st.day = run.job, run.day.isoformat()
        for (stage, state), n in counts_by_stage(conn, run.id).items():
            st.chunks.setdefault(stage, {})[state] = n
        rows, bad = conn.execute(
            select(
                func.coalesce(func.sum(Chunk.rows_read), 0),
                func.coalesce(func.sum(Chunk.rows_malformed), 0),
            ).where(Chunk.run_id == run.id, Chunk.stage == "map")
        ).one()
        st.rows_read, st.rows_malformed = int(rows), int(bad)
        started, finished, beat = conn.execute(
            select(Run.started_at, Run.finished_at, Run.heartbeat_at).where(Run.id == run.id)
        ).one()
        st.elapsed_s = seconds_between(started, finished or now)
        st.master = _master(conn, run.id, run.owner, seconds_between(beat, now))
        st.master["stale_after_s"] = stale_seconds
        if run.state not in TERMINAL_RUN_STATES:
            age = st.master["heartbeat_age_s"]
            st.stalled = run.owner is None or age is None or age > stale_seconds
        if st.elapsed_s:
            st.rows_per_s = st.rows_read / st.elapsed_s
        for cid, stage, idx, state, owner, claimed, done, nrows in conn.execute(
            select(
                Chunk.id,
                Chunk.stage,
                Chunk.idx,
                Chunk.state,
                Chunk.owner,
                Chunk.claimed_at,
                Chunk.done_at,
                Chunk.rows_read,
            ).where(Chunk.run_id == run.id, Chunk.claimed_at.is_not(None))
        ):
            secs = seconds_between(claimed, done if state == "done" else now)
            st.slowest.append(
                {
                    "chunk": int(cid),
                    "stage": stage,
                    "idx": int(idx),
                    "state": state,
                    "owner": owner,
                    "seconds": round(secs or 0.0, 3),
                    "rows": int(nrows),
                }
            )
        st.slowest = sorted(st.slowest, key=lambda c: -c["seconds"])[:5]
        out.append(st)
    return out


def _master(conn: Connection, run_id: int, owner: str | None, age: float | None) -> dict[str, Any]:
    """The run's master as status shows it; ``last_owner`` names the master that
    last took the run, also after it released or lost it."""
    last = (
        owner
        or conn.execute(
            select(RunEvent.actor)
            .where(RunEvent.run_id == run_id, RunEvent.kind == "master_acquired")
            .order_by(RunEvent.id.desc())
            .limit(1)
        ).scalar()
    )
    return {
        "owner": owner,
        "last_owner": last,
        "heartbeat_age_s": None if age is None else round(age, 1),
    }


def as_dict(conn: Connection, statuses: list[RunStatus], alive_within: float) -> dict[str, Any]:
    return {
        "runs": [asdict(s) for s in statuses],
        "workers": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "last_seen_at": str(w.last_seen_at),
                "current_chunk": w.current_chunk_id,
            }
            for w in worker_repo.alive(conn, alive_within)
        ],
    }
