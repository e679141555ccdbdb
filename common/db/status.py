"""Read-only views of runs for ``status``: progress, throughput, workers, slow chunks."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from nightfold.common.db import workers as worker_repo
from nightfold.common.db.chunks import counts_by_stage
from nightfold.common.db.clock import db_now, seconds_between
from nightfold.common.db.models import Chunk, Run
from nightfold.common.db.runs import list_runs


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


def run_status(conn: Connection, *, day: dt.date | None, limit: int = 5) -> list[RunStatus]:
    now = conn.execute(select(db_now())).scalar_one()
    out: list[RunStatus] = []
    for run in list_runs(conn, day=day, limit=limit):
        st = RunStatus(run.id, run.label, run.state.value, run.cancel_requested, run.error)
        for (stage, state), n in counts_by_stage(conn, run.id).items():
            st.chunks.setdefault(stage, {})[state] = n
        rows, bad = conn.execute(
            select(
                func.coalesce(func.sum(Chunk.rows_read), 0),
                func.coalesce(func.sum(Chunk.rows_malformed), 0),
            ).where(Chunk.run_id == run.id, Chunk.stage == "map")
        ).one()
        st.rows_read, st.rows_malformed = int(rows), int(bad)
        started, finished = conn.execute(
            select(Run.started_at, Run.finished_at).where(Run.id == run.id)
        ).one()
        st.elapsed_s = seconds_between(started, finished or now)
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
