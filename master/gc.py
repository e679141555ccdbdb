"""Garbage collection of map partials (the shuffle's intermediate data).

Partials stay after a run so that a reduce can always be redone; ``gc``
removes those of finished runs: every generation but the latest succeeded one,
or all of them with ``everything``. Runs still in progress are never touched.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from nightfold.common.db import cleanup as cleanup_repo
from nightfold.common.db.cleanup import Generation
from nightfold.common.keys import PARTIALS_TABLE, partial_prefix, prefix_range
from nightfold.common.states import TERMINAL_RUN_STATES, RunState
from nightfold.common.store.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collected:
    run_id: int
    generation: int
    rows_deleted: int


def collectable(runs: list[Generation], *, everything: bool) -> list[Generation]:
    """The finished generations whose partials may go: all of them with
    ``everything``, else all but the latest succeeded one (its reduce can be
    redone). Runs in progress are never collectable."""
    succeeded = [r.generation for r in runs if r.state is RunState.SUCCEEDED]
    keep = None if everything or not succeeded else max(succeeded)
    return [r for r in runs if r.state in TERMINAL_RUN_STATES and r.generation != keep]


def collect(
    engine: Engine, store: Store, job: str, day: dt.date, *, everything: bool, actor: str
) -> list[Collected]:
    """Delete the partials of ``job``'s finished runs of ``day``; returns what went."""
    with engine.connect() as conn:
        runs = cleanup_repo.generations(conn, job, day)
    done: list[Collected] = []
    for run in collectable(runs, everything=everything):
        key_range = prefix_range(partial_prefix(job, day, run.generation))
        deleted = store.delete_range(PARTIALS_TABLE, key_range)
        with engine.begin() as conn:
            cleanup_repo.record_partials_collected(conn, run.run_id, deleted, actor)
        log.info("gc %s/%s#%d: %d partial rows deleted", job, day, run.generation, deleted)
        done.append(Collected(run.run_id, run.generation, deleted))
    return done
