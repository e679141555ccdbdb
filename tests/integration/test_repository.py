"""The chunk and run state machines as rows: every transition through the
repository functions, on SQLite and on the real MariaDB, with the same assertions."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import Engine, func, select, update

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.db.runs import RunInfo, RunParams
from nightfold.common.errors import ChunkLost, IllegalTransition, RunConflict
from nightfold.common.keys import KeyRange
from nightfold.common.states import ChunkState, RunState, Stage

DAY = dt.date(2026, 11, 22)


def _run(engine: Engine, *, n: int = 4, **params: object) -> RunInfo:
    p = RunParams(**{"max_in_flight": 2, "lease_seconds": 30, "max_attempts": 2, **params})  # type: ignore[arg-type]
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", DAY, 1, p, "test")
        assert run is not None
        specs = [
            ChunkSpec(Stage.MAP, i, KeyRange(b"k%02d" % i, b"k%02d" % (i + 1))) for i in range(n)
        ]
        specs.append(ChunkSpec(Stage.REDUCE, 0, KeyRange(b"p", b"q")))
        assert run_repo.move(conn, run.id, RunState.PLANNING, RunState.MAPPING, actor="test")
        chunk_repo.insert_plan(conn, run.id, specs)
        got = run_repo.get_run(conn, run.id)
    assert got is not None
    return got


def _claim_next(engine: Engine, run: RunInfo, me: str) -> chunk_repo.Claim:
    with engine.begin() as conn:
        found = chunk_repo.claimable(conn, 10)
        assert found, "nothing claimable"
        claim = chunk_repo.claim(conn, found[0].chunk_id, me)
    assert claim is not None
    return claim


def test_create_run_is_unique_per_generation(engine: Engine) -> None:
    # Given a run of (job, day, generation 1)
    _run(engine)
    # When another master tries to create the same generation
    with engine.begin() as conn:
        again = run_repo.create_run(conn, "merchant_daily", DAY, 1, RunParams(), "other")
    # Then nothing is created
    assert again is None


def test_window_caps_queued_and_claimed(engine: Engine) -> None:
    run = _run(engine, n=5)
    with engine.begin() as conn:
        first = chunk_repo.open_window(conn, run.id, Stage.MAP, 2, "m")
        second = chunk_repo.open_window(conn, run.id, Stage.MAP, 2, "m")
    assert len(first) == 2 and second == []
    claim = _claim_next(engine, run, "w1")
    with engine.begin() as conn:
        chunk_repo.complete(conn, claim, 10, 1)
        third = chunk_repo.open_window(conn, run.id, Stage.MAP, 2, "m")
        counts = chunk_repo.counts_by_state(conn, run.id, Stage.MAP)
    assert len(third) == 1
    assert counts == {"done": 1, "queued": 2, "pending": 2}


def test_claim_succeeds_for_exactly_one_worker(engine: Engine) -> None:
    run = _run(engine)
    with engine.begin() as conn:
        (cid, *_rest) = chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    with engine.begin() as conn:
        a = chunk_repo.claim(conn, cid, "w1")
    with engine.begin() as conn:
        b = chunk_repo.claim(conn, cid, "w2")
    assert a is not None and a.attempt == 1
    assert b is None


def test_completion_is_fenced_by_owner_and_attempt(engine: Engine) -> None:
    run = _run(engine, lease_seconds=1)
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    stale = _claim_next(engine, run, "w1")
    # Given the lease expired and the master took the chunk back
    time.sleep(1.2)
    with engine.begin() as conn:
        taken = chunk_repo.reclaim_expired(conn, run.id, 3, "m")
        assert taken == [stale.chunk_id]
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    fresh = _claim_next(engine, run, "w2")
    assert fresh.chunk_id == stale.chunk_id and fresh.attempt == 2
    # When the old owner tries to heartbeat or complete
    with engine.begin() as conn, pytest.raises(ChunkLost):
        chunk_repo.heartbeat(conn, stale, 5, b"k")
    with engine.begin() as conn, pytest.raises(ChunkLost):
        chunk_repo.complete(conn, stale, 5, 0)
    # Then only the new owner completes it, once
    with engine.begin() as conn:
        chunk_repo.complete(conn, fresh, 7, 0)
        with pytest.raises(ChunkLost):
            chunk_repo.complete(conn, fresh, 7, 0)
        done = conn.execute(
            select(func.count()).where(RunEvent.chunk_id == fresh.chunk_id, RunEvent.kind == "done")
        ).scalar_one()
    assert done == 1


def test_failures_retry_then_die(engine: Engine) -> None:
    run = _run(engine, max_attempts=2)
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    first = _claim_next(engine, run, "w1")
    with engine.begin() as conn:
        assert chunk_repo.fail(conn, first, "boom") is ChunkState.PENDING
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    second = _claim_next(engine, run, "w1")
    assert second.chunk_id == first.chunk_id and second.attempt == 2
    with engine.begin() as conn:
        assert chunk_repo.fail(conn, second, "boom again") is ChunkState.DEAD
        dead = chunk_repo.first_dead(conn, run.id)
    assert dead == chunk_repo.DeadChunk("map", 0, "boom again")


def test_release_does_not_count_as_an_attempt(engine: Engine) -> None:
    run = _run(engine)
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    claim = _claim_next(engine, run, "w1")
    with engine.begin() as conn:
        assert chunk_repo.release(conn, claim, "shutdown")
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    again = _claim_next(engine, run, "w2")
    assert again.attempt == 1


def test_cancel_blocks_claims_and_is_seen_at_heartbeat(engine: Engine) -> None:
    run = _run(engine)
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 2, "m")
    claim = _claim_next(engine, run, "w1")
    with engine.begin() as conn:
        assert run_repo.request_cancel(conn, run.id, "cli")
        assert chunk_repo.heartbeat(conn, claim, 1, b"k") is True
        assert chunk_repo.claimable(conn, 10) == []


def test_publish_outbox_and_republish(engine: Engine) -> None:
    run = _run(engine)
    with engine.begin() as conn:
        ids = chunk_repo.open_window(conn, run.id, Stage.MAP, 2, "m")
        due = chunk_repo.due_for_publish(conn, run.id, 60)
        assert sorted(d.chunk_id for d in due) == sorted(ids)
        assert not any(d.republish for d in due)
        chunk_repo.mark_published(conn, ids)
        assert chunk_repo.due_for_publish(conn, run.id, 60) == []
        # a hint not claimed long after publishing is published again
        again = chunk_repo.due_for_publish(conn, run.id, -1)
        assert len(again) == 2 and all(d.republish for d in again)
        assert chunk_repo.queued_count(conn, run.id) == 2


def test_master_ownership(engine: Engine) -> None:
    run = _run(engine)
    with engine.begin() as conn:
        run_repo.acquire(conn, run.id, "m1", 30, force=False)
    with engine.begin() as conn, pytest.raises(RunConflict, match="owned by master m1"):
        run_repo.acquire(conn, run.id, "m2", 30, force=False)
    with engine.begin() as conn:
        run_repo.acquire(conn, run.id, "m2", 0.000001 - 1, force=False)  # stale: takes over
        with pytest.raises(RunConflict):
            run_repo.heartbeat(conn, run.id, "m1")
        run_repo.heartbeat(conn, run.id, "m2")


def test_terminal_states_do_not_move(engine: Engine) -> None:
    run = _run(engine)
    with engine.begin() as conn:
        assert run_repo.move(conn, run.id, RunState.MAPPING, RunState.FAILED, actor="m", error="x")
        assert not run_repo.move(conn, run.id, RunState.MAPPING, RunState.REDUCING, actor="m")
        assert not run_repo.request_cancel(conn, run.id, "cli")


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (RunState.SUCCEEDED, RunState.MAPPING),
        (RunState.FAILED, RunState.CANCELLED),
        (RunState.REDUCING, RunState.MAPPING),
    ],
)
def test_an_illegal_run_move_is_refused(engine: Engine, src: RunState, dst: RunState) -> None:
    # Given a run that really is in src (all pairs: tests/unit/test_transitions_enforced.py)
    run = _run(engine)
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run.id).values(state=src.value))
    # When asked for a move not in RUN_TRANSITIONS, the repository raises and writes nothing
    with pytest.raises(IllegalTransition), engine.begin() as conn:
        run_repo.move(conn, run.id, src, dst, actor="m")
    with engine.connect() as conn:
        info = run_repo.get_run(conn, run.id)
    assert info is not None and info.state is src


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (ChunkState.DONE, ChunkState.PENDING),
        (ChunkState.QUEUED, ChunkState.DONE),
        (ChunkState.DEAD, ChunkState.QUEUED),
    ],
)
def test_an_illegal_chunk_move_is_refused(engine: Engine, src: ChunkState, dst: ChunkState) -> None:
    run = _run(engine, n=1)
    with engine.begin() as conn:
        conn.execute(update(Chunk).where(Chunk.run_id == run.id).values(state=src.value))
    with pytest.raises(IllegalTransition), engine.begin() as conn:
        chunk_repo.move(conn, Chunk.run_id == run.id, src, dst)
    with engine.connect() as conn:
        states = set(conn.execute(select(Chunk.state).where(Chunk.run_id == run.id)).scalars())
    assert states == {src.value}


def test_a_finished_run_stops_its_workers_at_their_next_beat(engine: Engine) -> None:
    # Given a claimed chunk of a mapping run
    run = _run(engine)
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    claim = _claim_next(engine, run, "w1")
    with engine.begin() as conn:
        assert chunk_repo.heartbeat(conn, claim, 10, b"k00x") is False
        assert chunk_repo.held_claims(conn, run.id) == 1
        # When the run fails (another chunk died) while the claim is still held
        assert run_repo.move(conn, run.id, RunState.MAPPING, RunState.FAILED, actor="m")
    # Then the holder is told to stop at its next beat (it must not write any more),
    # and the claim counts as held until it is released
    with engine.begin() as conn:
        assert chunk_repo.heartbeat(conn, claim, 20, b"k00y") is True
        assert chunk_repo.held_claims(conn, run.id) == 1
        assert chunk_repo.release(conn, claim, "run no longer running")
        assert chunk_repo.held_claims(conn, run.id) == 0


def test_a_rerun_waits_for_the_previous_generation_to_let_go(engine: Engine) -> None:
    from nightfold.common.config import Settings
    from nightfold.common.jobs import get_job
    from nightfold.master.loop import Master

    url = engine.url.render_as_string(hide_password=False)
    master = Master(Settings(database_url=url), engine, None, None, get_job("merchant_daily"))  # type: ignore[arg-type]
    # Given generation 1 of the day, still mapping, with a chunk claimed
    run = _run(engine)
    with engine.begin() as conn:
        chunk_repo.open_window(conn, run.id, Stage.MAP, 1, "m")
    claim = _claim_next(engine, run, "w1")
    # Then a rerun is refused while it is live: two live generations would both write
    with pytest.raises(RunConflict, match=r"still mapping.*cancel it first"):
        master.open_run(DAY, rerun=True)
    # And once it has failed, the rerun waits while the claim is still held
    with engine.begin() as conn:
        assert run_repo.move(conn, run.id, RunState.MAPPING, RunState.FAILED, actor="m")
    assert master.open_run(DAY, rerun=True) is None
    # And starts generation 2 once the holder let go
    with engine.begin() as conn:
        assert chunk_repo.release(conn, claim, "run no longer running")
    again = master.open_run(DAY, rerun=True)
    assert again is not None and again.generation == 2
