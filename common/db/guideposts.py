"""Guideposts: where an earlier night's rows were, read back from its chunks.

Apache Phoenix keeps cut points between runs ("guideposts") so that it never
has to read a table to split it. nightfold already keeps them: every done map
chunk of a succeeded run holds its key range and the rows it read. The planner
reads those of the latest succeeded run of the same job, a few days back at
most, with the same salt buckets (else its ranges would not line up with
today's), and moves their keys onto today's day (``keys.move_day``). No table of
its own, so nothing to migrate or keep in step: the chunks *are* the record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, select

from nightfold.common.db.models import Chunk, Run
from nightfold.common.params import RunParams
from nightfold.common.states import ChunkState, RunState, Stage

CANDIDATE_RUNS = 20
"""Succeeded runs looked at for one with matching salt buckets (newest first)."""


@dataclass(frozen=True)
class Night:
    """An earlier run's map chunks: ``(start_key, end_key, rows_read)`` by start key."""

    run_id: int
    day: dt.date
    chunks: list[tuple[bytes, bytes, int]]


def latest_night(
    conn: Connection,
    job: str,
    day: dt.date,
    salt_buckets: int,
    *,
    lookback_days: int,
    exclude_run_id: int | None = None,
) -> Night | None:
    """The done map chunks of ``job``'s latest succeeded run from ``day`` back to
    ``day - lookback_days`` (``day`` itself: an earlier generation) planned with
    ``salt_buckets``; ``None`` if there is none."""
    runs = conn.execute(
        select(Run.id, Run.day, Run.params)
        .where(
            Run.job == job,
            Run.state == RunState.SUCCEEDED.value,
            Run.day <= day,
            Run.day >= day - dt.timedelta(days=lookback_days),
        )
        .order_by(Run.day.desc(), Run.generation.desc())
        .limit(CANDIDATE_RUNS)
    ).all()
    for run_id, run_day, params in runs:
        if run_id == exclude_run_id or RunParams.from_json(params).salt_buckets != salt_buckets:
            continue
        rows = conn.execute(
            select(Chunk.start_key, Chunk.end_key, Chunk.rows_read)
            .where(
                Chunk.run_id == run_id,
                Chunk.stage == Stage.MAP.value,
                Chunk.state == ChunkState.DONE.value,
            )
            .order_by(Chunk.start_key)
        ).all()
        if rows:
            return Night(run_id, run_day, [(bytes(s), bytes(e), int(n)) for s, e, n in rows])
    return None
