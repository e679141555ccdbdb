"""Observing a trial's run through its database: snapshots of the run's state (its
phase, chunk counts, unpublished hints, who holds which claim), the database clock,
and chunks done more than once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Engine, case, func, select, text

from nightfold.common.db.models import Chunk, Run
from tests.support.chaos.plan import TERMINAL


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
        if self.state == "combining":  # a sharded job: its summaries are written here
            total = self.total("combine")
            return "finishing" if total and self.n("combine", "done") == total else "reduce"
        total = self.total("reduce")
        done = self.n("reduce", "done")
        if total and done == total:
            return "reduce" if self.total("combine") else "finishing"
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
