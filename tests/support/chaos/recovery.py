"""Recovery: how long a restarted master takes from its spawn to its first progress
(``RECOVERY_DEFINITION``, which the report carries), and to take the run over."""

from __future__ import annotations

from sqlalchemy import func, select

from nightfold.common.db.models import RunEvent
from tests.support.chaos.rig import Rig

RECOVERY_DEFINITION = (
    "from the spawn of a restarted master (database clock) to the first run_events row "
    "its identity writes after master_acquired (a chunk queued, a lease taken back, a "
    "stage move or the run's end); when it writes none before exiting, to the first chunk "
    "done after its spawn. Restarts are those after a SIGKILL of the master (after_kill) "
    "and after the master gave up in a database outage (after_outage), where the new "
    "master often has nothing to do until the leases of the outage run out"
)


def measure(rig: Rig) -> None:
    """Restart -> first progress of each restarted master (see RECOVERY_DEFINITION)."""
    assert rig.engine is not None
    for m, cause in rig.master_restarts:
        if m.spawned_db is None:
            continue
        with rig.engine.connect() as conn:
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
        rig.result.takeovers.append((acquired_at - m.spawned_db).total_seconds())
        if first is not None:
            seconds = (first - m.spawned_db).total_seconds()
            rig.result.recoveries.append(seconds)
            rig.result.recovery_causes.append(cause)
