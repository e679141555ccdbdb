"""Many processes racing to claim the same chunks: each chunk is claimed by one
worker at a time and completed exactly once, on SQLite and on MariaDB -- one
chunk per transaction, and several at once (``claim_many``/``complete_many``)."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp

import pytest
from sqlalchemy import Engine, func, select

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec, Completion
from nightfold.common.db.engine import make_engine
from nightfold.common.db.models import RunEvent
from nightfold.common.db.runs import RunParams
from nightfold.common.keys import KeyRange
from nightfold.common.states import RunState, Stage

CHUNKS = 120
RACERS = 6


def _race(url: str, me: str, barrier: mp.synchronize.Barrier, out: mp.Queue, batched: bool) -> None:  # type: ignore[type-arg]
    engine = make_engine(url)
    known = chunk_repo.KnownRuns()  # as a worker process claims: its runs read once
    won = 0
    barrier.wait()
    while True:
        with engine.connect() as conn:
            found = chunk_repo.claimable(conn, 10)
            conn.rollback()
        if not found:
            break
        if batched:  # everyone goes for the same ten at once
            with engine.begin() as conn:
                claims = chunk_repo.claim_many(conn, [c.chunk_id for c in found], me, known)
            with engine.begin() as conn:
                lost = chunk_repo.complete_many(
                    conn, [Completion(c, 1, 0) for c in claims.values()]
                )
            assert not lost
            won += len(claims)
            continue
        for candidate in found:  # everyone goes for the same candidates
            with engine.begin() as conn:
                claim = chunk_repo.claim(conn, candidate.chunk_id, me)
            if claim is not None:
                with engine.begin() as conn:
                    chunk_repo.complete(conn, claim, 1, 0)
                won += 1
    engine.dispose()
    out.put(won)


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_racing_claims_complete_each_chunk_once(
    engine: Engine, database_url: str, batched: bool
) -> None:
    # Given a run with every chunk queued
    with engine.begin() as conn:
        run = run_repo.create_run(
            conn, "merchant_daily", dt.date(2026, 11, 22), 1, RunParams(max_in_flight=CHUNKS), "t"
        )
        assert run is not None
        run_repo.move(conn, run.id, RunState.PLANNING, RunState.MAPPING, actor="t")
        specs = [
            ChunkSpec(Stage.MAP, i, KeyRange(b"k%04d" % i, b"k%04d" % (i + 1)))
            for i in range(CHUNKS)
        ]
        chunk_repo.insert_plan(conn, run.id, specs)
        chunk_repo.open_window(conn, run.id, Stage.MAP, CHUNKS, "t")
    # When several processes race for them
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(RACERS), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(database_url, f"racer{i}", barrier, out, batched))
        for i in range(RACERS)
    ]
    for p in procs:
        p.start()
    wins = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    # Then every chunk was won exactly once, and claimed once, and done once
    assert sum(wins) == CHUNKS
    with engine.connect() as conn:
        for kind in ("claimed", "done"):
            per_chunk = conn.execute(
                select(RunEvent.chunk_id, func.count())
                .where(RunEvent.kind == kind)
                .group_by(RunEvent.chunk_id)
            ).all()
            assert len(per_chunk) == CHUNKS and {n for _, n in per_chunk} == {1}
        assert chunk_repo.counts_by_state(conn, run.id, Stage.MAP) == {"done": CHUNKS}
