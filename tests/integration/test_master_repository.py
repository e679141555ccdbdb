"""The repository functions the master's planner and gc call (``common/db/plans.py``,
``common/db/cleanup.py``) and the embedded transport's poll (``common/db/poll.py``),
on SQLite and on the real MariaDB, with the same assertions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, select

from nightfold.common.db import cleanup as cleanup_repo
from nightfold.common.db import plans as plan_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.db.poll import queued_chunks
from nightfold.common.db.runs import RunInfo
from nightfold.common.keys import PARTIAL_FAMILY, PARTIALS_TABLE, KeyRange, partial_prefix
from nightfold.common.params import RunParams
from nightfold.common.states import RunState, Stage
from nightfold.common.store import open_store
from nightfold.master.gc import collect

DAY = dt.date(2026, 11, 22)
JOB = "merchant_daily"


def _specs(n: int) -> list[ChunkSpec]:
    specs = [ChunkSpec(Stage.MAP, i, KeyRange(b"k%02d" % i, b"k%02d" % (i + 1))) for i in range(n)]
    return [*specs, ChunkSpec(Stage.REDUCE, 0, KeyRange(b"p", b"q"))]


def _create(engine: Engine, generation: int = 1) -> RunInfo:
    with engine.begin() as conn:
        run = run_repo.create_run(conn, JOB, DAY, generation, RunParams(), "test")
    assert run is not None
    return run


def _events(engine: Engine, run_id: int) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunEvent.kind, RunEvent.detail)
            .where(RunEvent.run_id == run_id)
            .order_by(RunEvent.id)
        )
        return [(k, d) for k, d in rows]


def test_record_plan_moves_the_run_and_records_every_chunk_once(engine: Engine) -> None:
    run = _create(engine)
    with engine.begin() as conn:
        assert plan_repo.record_plan(conn, run.id, _specs(3), "m1")
    with engine.begin() as conn:  # another master, too late: nothing written
        assert not plan_repo.record_plan(conn, run.id, _specs(5), "m2")
    with engine.connect() as conn:
        state, total, started = conn.execute(
            select(Run.state, Run.chunks_total, Run.started_at).where(Run.id == run.id)
        ).one()
        chunks = conn.execute(
            select(Chunk.stage, Chunk.idx, Chunk.state).where(Chunk.run_id == run.id)
        ).all()
    assert (state, total) == (RunState.MAPPING.value, 4)
    assert started is not None
    assert sorted((s, i) for s, i, _ in chunks) == [
        ("map", 0),
        ("map", 1),
        ("map", 2),
        ("reduce", 0),
    ]
    assert {st for _, _, st in chunks} == {"pending"}
    assert [k for k, _ in _events(engine, run.id)].count("run_mapping") == 1


def test_generations_lists_the_runs_of_a_job_and_day_in_order(engine: Engine) -> None:
    first = _create(engine, 1)
    with engine.begin() as conn:
        assert run_repo.move(conn, first.id, RunState.PLANNING, RunState.FAILED, actor="t")
    second = _create(engine, 2)
    with engine.begin() as conn:
        other = run_repo.create_run(conn, JOB, DAY + dt.timedelta(days=1), 1, RunParams(), "t")
        assert other is not None
        found = cleanup_repo.generations(conn, JOB, DAY)
        assert cleanup_repo.generations(conn, "other_job", DAY) == []
    assert found == [
        cleanup_repo.Generation(first.id, 1, RunState.FAILED),
        cleanup_repo.Generation(second.id, 2, RunState.PLANNING),
    ]


def test_gc_deletes_finished_generations_partials_and_records_it(
    engine: Engine, tmp_path: Path
) -> None:
    # Given generation 1 failed, generation 2 succeeded, generation 3 in progress
    runs = [_create(engine, g) for g in (1, 2, 3)]
    with engine.begin() as conn:
        assert run_repo.move(conn, runs[0].id, RunState.PLANNING, RunState.FAILED, actor="t")
        for src, dst in (
            (RunState.PLANNING, RunState.MAPPING),
            (RunState.MAPPING, RunState.REDUCING),
            (RunState.REDUCING, RunState.SUCCEEDED),
        ):  # the legal path: the repository refuses planning -> succeeded
            assert run_repo.move(conn, runs[1].id, src, dst, actor="t")
    store = open_store(f"local://{tmp_path}/store.sqlite")
    try:
        store.ensure_table(PARTIALS_TABLE, [PARTIAL_FAMILY])
        for g in (1, 2, 3):
            key = partial_prefix(JOB, DAY, g, 0) + b"x"
            store.put_many(PARTIALS_TABLE, [(key, {PARTIAL_FAMILY.encode() + b":p": b"v"})])
        # When gc runs (keeping the latest success), then with everything
        kept = collect(engine, store, JOB, DAY, everything=False, actor="gc")
        rest = collect(engine, store, JOB, DAY, everything=True, actor="gc")
    finally:
        store.close()
    # Then the failed one went first, the succeeded one second, the running one never
    assert [(c.generation, c.rows_deleted) for c in kept] == [(1, 1)]
    assert [(c.generation, c.rows_deleted) for c in rest] == [(1, 0), (2, 1)]
    assert ("partials_collected", "rows=1") in _events(engine, runs[0].id)
    assert ("partials_collected", "rows=1") in _events(engine, runs[1].id)
    assert not [k for k, _ in _events(engine, runs[2].id) if k == "partials_collected"]


def test_queued_chunks_is_the_embedded_poll(engine: Engine) -> None:
    run = _create(engine)
    with engine.begin() as conn:
        assert plan_repo.record_plan(conn, run.id, _specs(2), "m1")
        conn.execute(
            Chunk.__table__.update()
            .where(Chunk.run_id == run.id, Chunk.stage == "map")
            .values(state="queued")
        )
    queued = queued_chunks(engine, str(engine.url))
    found = queued(8, [])
    assert [(c.run_id, c.stage, c.idx) for c in found] == [
        (run.id, "map", 0),
        (run.id, "map", 1),
    ]
    assert [c.chunk_id for c in queued(8, [found[0].chunk_id])] == [c.chunk_id for c in found[1:]]
    assert len(queued(1, [])) == 1
