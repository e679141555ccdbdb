"""4. Recovery: SIGKILL the master mid-map, restart it at once, and measure the
seconds until the restarted master makes progress (its first chunk moved to
``queued``, i.e. dispatch resumed) and how many chunks were done twice.

The window (``max_in_flight``) is kept small (4, two workers) so the master
must keep dispatching during the map and a dead master is felt at once.

    python -m bench.recovery
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from sqlalchemy import func, select

from bench.common import (
    ROWS,
    WORK,
    clear_outputs,
    ensure_seeded,
    expected_digest,
    fresh_mariadb,
    fresh_queue,
    log,
    store_url,
    stored_digest,
    write_result,
)
from bench.runner import nightfold_env, nightfold_workers, spawn_master
from nightfold.common.db.engine import make_engine
from nightfold.common.db.models import Chunk, RunEvent
from tests.support.pipeline import wait_for

WORKERS = 2
MAX_IN_FLIGHT = 4
KILL_AFTER_DONE = int(os.environ.get("NIGHTFOLD_BENCH_KILL_AFTER", "6"))
TARGET_S = 5.0


def _done_chunks(engine: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(Chunk.stage == "map", Chunk.state == "done")
            ).scalar_one()
        )


def _first_event(engine: Any, kinds: tuple[str, ...], exclude_actor: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(RunEvent.actor, RunEvent.kind, RunEvent.at)
            .where(RunEvent.kind.in_(kinds), RunEvent.actor != exclude_actor)
            .order_by(RunEvent.id)
            .limit(1)
        ).one_or_none()


def _master_actor(engine: Any) -> str:
    with engine.connect() as conn:
        actor = conn.execute(
            select(RunEvent.actor)
            .where(RunEvent.kind == "master_acquired")
            .order_by(RunEvent.id.desc())
            .limit(1)
        ).scalar_one()
    return str(actor)


def run() -> dict[str, Any]:
    ensure_seeded()
    url = store_url()
    clear_outputs(url)
    with fresh_mariadb("br") as db_url, fresh_queue() as queue_url:
        env = nightfold_env(db_url, queue_url, url, max_in_flight=MAX_IN_FLIGHT)
        logs = WORK / "logs" / "recovery"
        engine = make_engine(db_url)
        with nightfold_workers(env, logs, WORKERS, db_url):
            started = time.monotonic()
            first = spawn_master(env, logs, "master-1")
            wait_for(
                lambda: _done_chunks(engine) >= KILL_AFTER_DONE, 600, "map chunks done", poll=0.02
            )
            old = _master_actor(engine)
            done_at_kill = _done_chunks(engine)
            first.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            first.wait()
            second = spawn_master(env, logs, "master-2")
            acquired: list[float] = []
            progress: list[float] = []

            def took_over() -> bool:
                if not acquired and _first_event(engine, ("master_acquired",), old) is not None:
                    acquired.append(time.monotonic() - killed)
                if _first_event(engine, ("queued",), old) is not None:
                    progress.append(time.monotonic() - killed)
                    return True
                return False

            wait_for(took_over, 120, "the restarted master's first dispatch", poll=0.01)
            code = second.wait(timeout=900)
            wall = time.monotonic() - started
        with engine.connect() as conn:
            done_events = conn.execute(
                select(RunEvent.chunk_id, func.count())
                .where(RunEvent.kind == "done")
                .group_by(RunEvent.chunk_id)
            ).all()
            retried = conn.execute(
                select(func.count()).where(Chunk.state == "done", Chunk.attempt > 1)
            ).scalar_one()
            total = conn.execute(select(func.count()).select_from(Chunk)).scalar_one()
        engine.dispose()
    redone = sum(n - 1 for _, n in done_events if n > 1)
    digest = stored_digest(url)
    exact = code == 0 and digest == expected_digest()
    result = {
        "rows": ROWS,
        "workers": WORKERS,
        "max_in_flight": MAX_IN_FLIGHT,
        "killed_after_map_chunks_done": done_at_kill,
        "recovery_s": round(progress[0], 3),
        "takeover_s": round(acquired[0], 3) if acquired else None,
        "target": f"<= {TARGET_S}",
        "met": progress[0] <= TARGET_S,
        "chunks_redone": redone,
        "chunks_retried": int(retried),
        "chunks_total": int(total),
        "run_wall_s": round(wall, 1),
        "exit_code": code,
        "exact": exact,
    }
    log(
        f"recovery: restarted master took over after {result['takeover_s']} s and dispatched "
        f"after {result['recovery_s']} s; {redone} chunks redone; exact={exact}"
    )
    write_result("recovery", result)
    return result


if __name__ == "__main__":
    run()
