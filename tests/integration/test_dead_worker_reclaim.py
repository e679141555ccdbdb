"""Taking back the claims of dead workers (``chunks.reclaim_orphaned``), on SQLite
and on the real MariaDB: a claim goes back when its owner's ``workers`` row is
stale or stopped, never when the owner is fresh or unknown, and is fenced by
owner and attempt like every other transition."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import Engine, select, update

from nightfold.common.config import Settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db import workers as worker_repo
from nightfold.common.db.chunks import ChunkSpec, Claim
from nightfold.common.db.clock import db_now_plus
from nightfold.common.db.models import Chunk, RunEvent, Worker
from nightfold.common.db.runs import RunInfo, RunParams
from nightfold.common.errors import ChunkLost, ServiceUnavailable
from nightfold.common.keys import KeyRange
from nightfold.common.states import ChunkState, RunState, Stage
from nightfold.master.loop import Master

DAY = dt.date(2026, 11, 22)
DEAD_S = 6.0


def _run(engine: Engine, *, max_attempts: int = 3) -> RunInfo:
    params = RunParams(max_in_flight=4, lease_seconds=60, max_attempts=max_attempts)
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", DAY, 1, params, "test")
        assert run is not None
        assert run_repo.move(conn, run.id, RunState.PLANNING, RunState.MAPPING, actor="test")
        specs = [ChunkSpec(Stage.MAP, i, KeyRange(b"k%d" % i, b"k%d" % (i + 1))) for i in range(4)]
        chunk_repo.insert_plan(conn, run.id, specs)
        chunk_repo.open_window(conn, run.id, Stage.MAP, 4, "m")
        got = run_repo.get_run(conn, run.id)
    assert got is not None
    return got


def _claim(engine: Engine, me: str) -> Claim:
    with engine.begin() as conn:
        found = chunk_repo.claimable(conn, 1)
        assert found, "nothing claimable"
        claim = chunk_repo.claim(conn, found[0].chunk_id, me)
    assert claim is not None
    return claim


def _worker(engine: Engine, me: str, *, seen_ago: float = 0.0, stopped: bool = False) -> None:
    with engine.begin() as conn:
        worker_repo.register(conn, me, "host", 1)
        if seen_ago:
            conn.execute(
                update(Worker).where(Worker.id == me).values(last_seen_at=db_now_plus(-seen_ago))
            )
        if stopped:
            worker_repo.stopped(conn, me)


def _reclaim(engine: Engine, run: RunInfo) -> list[int]:
    with engine.begin() as conn:
        return chunk_repo.reclaim_orphaned(conn, run.id, run.params.max_attempts, "m", DEAD_S)


def _state(engine: Engine, chunk_id: int) -> tuple[str, str | None, int]:
    with engine.connect() as conn:
        row = conn.execute(
            select(Chunk.state, Chunk.owner, Chunk.attempt).where(Chunk.id == chunk_id)
        ).one()
    return str(row[0]), row[1], int(row[2])


def _events(engine: Engine, chunk_id: int) -> list[tuple[str, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunEvent.kind, RunEvent.attempt)
            .where(RunEvent.chunk_id == chunk_id)
            .order_by(RunEvent.id)
        )
        return [(str(k), a) for k, a in rows]


def test_stale_owner_loses_its_claim_and_is_fenced_out(engine: Engine) -> None:
    run = _run(engine)
    # Given a worker holding a claim, last seen long ago
    _worker(engine, "w-dead", seen_ago=60)
    claim = _claim(engine, "w-dead")
    # When the master reclaims orphaned claims
    taken = _reclaim(engine, run)
    # Then the chunk is pending again, the attempt counted, the event says why
    assert taken == [claim.chunk_id]
    assert _state(engine, claim.chunk_id) == (ChunkState.PENDING.value, None, 1)
    assert _events(engine, claim.chunk_id)[-1] == ("worker_dead", 1)
    # And the old owner, should it wake up, can neither heartbeat nor complete
    with engine.begin() as conn, pytest.raises(ChunkLost):
        chunk_repo.heartbeat(conn, claim, 1, b"k")
    with engine.begin() as conn, pytest.raises(ChunkLost):
        chunk_repo.complete(conn, claim, 1, 0)
    # And the next claim is attempt 2
    _worker(engine, "w-new")
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 4, "m")
        again = chunk_repo.claim(conn, claim.chunk_id, "w-new")
    assert again is not None and again.attempt == 2


def test_fresh_owner_keeps_its_claim(engine: Engine) -> None:
    run = _run(engine)
    _worker(engine, "w-alive", seen_ago=1)
    claim = _claim(engine, "w-alive")
    assert _reclaim(engine, run) == []
    assert _state(engine, claim.chunk_id) == (ChunkState.CLAIMED.value, "w-alive", 1)


def test_stopped_owner_loses_its_claim(engine: Engine) -> None:
    run = _run(engine)
    _worker(engine, "w-stopped", stopped=True)
    claim = _claim(engine, "w-stopped")
    assert _reclaim(engine, run) == [claim.chunk_id]
    assert _state(engine, claim.chunk_id)[0] == ChunkState.PENDING.value


def test_owner_without_a_workers_row_is_left_to_its_lease(engine: Engine) -> None:
    run = _run(engine)
    claim = _claim(engine, "synthetic-claimer")
    assert _reclaim(engine, run) == []
    assert _state(engine, claim.chunk_id) == (ChunkState.CLAIMED.value, "synthetic-claimer", 1)


def test_only_the_dead_owners_claim_goes(engine: Engine) -> None:
    run = _run(engine)
    _worker(engine, "w-dead", seen_ago=60)
    _worker(engine, "w-alive")
    dead = _claim(engine, "w-dead")
    alive = _claim(engine, "w-alive")
    assert _reclaim(engine, run) == [dead.chunk_id]
    assert _state(engine, alive.chunk_id) == (ChunkState.CLAIMED.value, "w-alive", 1)
    assert _reclaim(engine, run) == []  # idempotent: nothing left to take


def test_last_attempt_of_a_dead_owner_makes_the_chunk_dead(engine: Engine) -> None:
    run = _run(engine, max_attempts=1)
    _worker(engine, "w-dead", seen_ago=60)
    claim = _claim(engine, "w-dead")
    assert _reclaim(engine, run) == [claim.chunk_id]
    assert _state(engine, claim.chunk_id)[0] == ChunkState.DEAD.value
    assert _events(engine, claim.chunk_id)[-1] == ("dead", 1)
    with engine.connect() as conn:
        assert chunk_repo.first_dead(conn, run.id) == chunk_repo.DeadChunk(
            "map", claim.idx, "worker not seen (attempt 1)"
        )


def test_new_attempt_of_a_live_owner_is_not_touched_by_an_old_dead_one(engine: Engine) -> None:
    run = _run(engine)
    # Given attempt 1 by a worker that died, taken back, and attempt 2 by a live one
    _worker(engine, "w-dead", seen_ago=60)
    first = _claim(engine, "w-dead")
    assert _reclaim(engine, run) == [first.chunk_id]
    _worker(engine, "w-alive")
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 4, "m")
        second = chunk_repo.claim(conn, first.chunk_id, "w-alive")
    assert second is not None and second.attempt == 2
    # When the master looks again, the dead worker's row still stale
    assert _reclaim(engine, run) == []
    # Then the live owner's attempt stands and completes; the dead one's cannot
    with engine.begin() as conn, pytest.raises(ChunkLost):
        chunk_repo.complete(conn, first, 1, 0)
    with engine.begin() as conn:
        chunk_repo.complete(conn, second, 1, 0)
    assert _state(engine, first.chunk_id)[0] == ChunkState.DONE.value


class _NoPublisher:
    def publish(self, *args: object, **kwargs: object) -> None:  # pragma: no cover
        raise AssertionError("nothing is published here")


def _master(engine: Engine, database_url: str) -> Master:
    settings = Settings(database_url=database_url, worker_dead_seconds=DEAD_S)
    return Master(settings, engine, None, _NoPublisher(), None)  # type: ignore[arg-type]


def test_master_judges_no_worker_dead_until_it_has_ticked_long_enough(
    engine: Engine, database_url: str
) -> None:
    run = _run(engine)
    _worker(engine, "w-dead", seen_ago=60)
    claim = _claim(engine, "w-dead")
    master = _master(engine, database_url)
    # Given a master that (re)started, or saw the database come back, just now
    master._healthy_since = time.monotonic()
    with engine.begin() as conn:
        master._take_over_dead_workers(conn, run, Stage.MAP)
    # Then the stale worker keeps its claim: it may only have been unable to beat
    assert _state(engine, claim.chunk_id)[0] == ChunkState.CLAIMED.value
    # When the master has ticked without an outage for worker_dead_seconds
    master._healthy_since = time.monotonic() - DEAD_S - 0.1
    with engine.begin() as conn:
        master._take_over_dead_workers(conn, run, Stage.MAP)
    # Then the claim goes back
    assert _state(engine, claim.chunk_id)[0] == ChunkState.PENDING.value


def test_master_restarts_its_healthy_clock_after_a_database_outage(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(engine)
    master = _master(engine, database_url)
    master._healthy_since = time.monotonic() - 3600
    seen: list[float] = []
    ticks = iter([ServiceUnavailable("database", "down"), (RunState.SUCCEEDED, True)])
    monkeypatch.setattr("nightfold.master.loop.time.sleep", lambda s: None)

    def tick(run_id: int) -> tuple[RunState | None, bool]:
        seen.append(master._healthy_since)
        step = next(ticks)
        if isinstance(step, Exception):
            raise step
        return step

    monkeypatch.setattr(master, "_tick", tick)
    before = time.monotonic()
    # When the loop meets an outage, then a good tick
    assert master._loop(run) is RunState.SUCCEEDED
    # Then during the tick after the outage the master did not count as healthy,
    # and its healthy clock restarted after it
    assert seen[1] == float("inf")
    assert before <= master._healthy_since <= time.monotonic()
