"""Garbage collection of map partials (the shuffle's intermediate data).

Partials stay after a run so that a reduce can always be redone; ``gc``
removes those of finished runs: every generation but the latest succeeded one,
or all of them with ``everything``. Runs still in progress are never touched.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import Engine, select

from nightfold.common.db.events import add_event
from nightfold.common.db.models import Run
from nightfold.common.keys import PARTIALS_TABLE, partial_prefix, prefix_range
from nightfold.common.states import TERMINAL_RUN_STATES, RunState
from nightfold.common.store.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collected:
    run_id: int
    generation: int
    rows_deleted: int


def collect(
    engine: Engine, store: Store, job: str, day: dt.date, *, everything: bool, actor: str
) -> list[Collected]:
    """Delete the partials of ``job``'s finished runs of ``day``; returns what went."""
    with engine.connect() as conn:
        runs = conn.execute(
            select(Run.id, Run.generation, Run.state)
            .where(Run.job == job, Run.day == day)
            .order_by(Run.generation)
        ).all()
    succeeded = [g for _, g, s in runs if s == RunState.SUCCEEDED.value]
    keep = None if everything or not succeeded else max(succeeded)
    done: list[Collected] = []
    for run_id, generation, state in runs:
        if state not in {s.value for s in TERMINAL_RUN_STATES} or generation == keep:
            continue
        key_range = prefix_range(partial_prefix(job, day, generation))
        deleted = store.delete_range(PARTIALS_TABLE, key_range)
        with engine.begin() as conn:
            add_event(conn, run_id, "partials_collected", actor=actor, detail=f"rows={deleted}")
        log.info("gc %s/%s#%d: %d partial rows deleted", job, day, generation, deleted)
        done.append(Collected(run_id, generation, deleted))
    return done
