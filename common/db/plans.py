"""Repository function for recording a run's plan.

The master computes a plan from the store (``master/planner.py``); recording it
is one database change: the run moves from planning to mapping, its chunks are
inserted and its chunk total set, all in the caller's transaction, so a master
killed mid-plan leaves either no plan or the whole plan.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, update

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.clock import db_now
from nightfold.common.db.models import Run
from nightfold.common.states import RunState


def record_plan(
    conn: Connection,
    run_id: int,
    specs: Sequence[ChunkSpec],
    actor: str,
    hot_groups: str | None = None,
) -> bool:
    """Move the run from planning to mapping and record its chunks (and a sharded
    job's hot groups: in the same transaction, so every chunk of the run reads the
    list its plan was made with); False (and nothing written) if the run was not
    planning: another master planned it first."""
    if not run_repo.move(
        conn, run_id, RunState.PLANNING, RunState.MAPPING, actor=actor, started_at=db_now()
    ):
        return False
    chunk_repo.insert_plan(conn, run_id, specs)
    conn.execute(
        update(Run).where(Run.id == run_id).values(chunks_total=len(specs), hot_groups=hot_groups)
    )
    return True
