"""Retrying only the dead chunks of a failed run (``nightfold retry``, the console's
button): the repository move on SQLite and MariaDB, every refusal leaving the rows
untouched, its fence against a racing ``--rerun``; then the whole thing on both
backends, a poison chunk that dies, the fix, ``nightfold retry`` and verify."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import Engine, func, select, update

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.errors import RET_RUN_FAILED, RunConflict
from nightfold.common.keys import KeyRange
from nightfold.common.params import RunParams
from nightfold.common.states import RunState, Stage
from tests.support.cli import nightfold, one_line_error
from tests.support.pipeline import (
    PIPELINE_DAY,
    Cluster,
    add_poison_row,
    assert_no_chunk_done_twice,
    assert_verifies,
    done_events_per_chunk,
    run_state,
)

DAY = dt.date(2026, 11, 22)
_days = itertools.count()


def _failed_run(
    engine: Engine, *, dead: list[tuple[Stage, int]], maps: int = 3, reduces: int = 2
) -> int:
    """A failed run of a day of its own: ``maps`` map and ``reduces`` reduce chunks;
    the ``dead`` ones dead after 3 attempts, every other map chunk done when only
    reduce chunks died (else the map chunks not dead are done, reduces pending)."""
    day = DAY + dt.timedelta(days=next(_days))
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", day, 1, RunParams(), "t")
        assert run is not None
        specs = [ChunkSpec(Stage.MAP, i, KeyRange(b"a%d" % i, b"b%d" % i)) for i in range(maps)]
        specs += [ChunkSpec(Stage.REDUCE, i, KeyRange(b"", b"")) for i in range(reduces)]
        chunk_repo.insert_plan(conn, run.id, specs)
        conn.execute(update(Run).where(Run.id == run.id).values(state="failed", error="boom"))
        conn.execute(
            update(Chunk)
            .where(Chunk.run_id == run.id, Chunk.stage == "map")
            .values(state="done", attempt=1)
        )
        if any(stage is Stage.REDUCE for stage, _ in dead):
            conn.execute(
                update(Chunk)
                .where(Chunk.run_id == run.id, Chunk.stage == "reduce")
                .values(state="done", attempt=1)
            )
        for stage, idx in dead:
            conn.execute(
                update(Chunk)
                .where(Chunk.run_id == run.id, Chunk.stage == stage.value, Chunk.idx == idx)
                .values(state="dead", attempt=3, error="poison row", owner=None)
            )
    return run.id


def _chunks(engine: Engine, run_id: int) -> dict[tuple[str, int], tuple[str, int, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Chunk.stage, Chunk.idx, Chunk.state, Chunk.attempt, Chunk.error).where(
                Chunk.run_id == run_id
            )
        )
        return {(s, int(i)): (st, int(a), e) for s, i, st, a, e in rows}


def _run(engine: Engine, run_id: int) -> tuple[str, str | None, object]:
    with engine.connect() as conn:
        row = conn.execute(
            select(Run.state, Run.error, Run.finished_at).where(Run.id == run_id)
        ).one()
    return str(row[0]), row[1], row[2]


def _event_kinds(engine: Engine, run_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(RunEvent.kind).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
            ).scalars()
        )


def test_a_dead_map_chunk_brings_the_run_back_to_mapping(engine: Engine) -> None:
    # Given a run that failed because map chunk 1 died
    run_id = _failed_run(engine, dead=[(Stage.MAP, 1)])
    before = _chunks(engine, run_id)
    # When the operator retries it
    with engine.begin() as conn:
        retried = chunk_repo.retry_dead(conn, run_id, "operator")
    # Then the run maps again, without its error; only the dead chunk moved,
    # with fresh attempts; every move is in the event log
    assert (retried.stage, retried.chunks, retried.run.state) == (Stage.MAP, 1, RunState.MAPPING)
    state, error, finished = _run(engine, run_id)
    assert (state, error, finished) == ("mapping", None, None)
    after = _chunks(engine, run_id)
    assert after[("map", 1)] == ("pending", 0, None)
    assert {k: v for k, v in after.items() if k != ("map", 1)} == {
        k: v for k, v in before.items() if k != ("map", 1)
    }
    assert _event_kinds(engine, run_id)[-3:] == ["run_mapping", "retried", "run_retried"]


def test_dead_reduce_items_bring_the_run_back_to_reducing(engine: Engine) -> None:
    run_id = _failed_run(engine, dead=[(Stage.REDUCE, 0), (Stage.REDUCE, 1)])
    with engine.begin() as conn:
        retried = chunk_repo.retry_dead(conn, run_id, "operator")
    assert (retried.stage, retried.chunks) == (Stage.REDUCE, 2)
    assert _run(engine, run_id)[0] == "reducing"
    after = _chunks(engine, run_id)
    assert after[("reduce", 0)][:2] == after[("reduce", 1)][:2] == ("pending", 0)
    assert all(after[("map", i)][0] == "done" for i in range(3))


@pytest.mark.parametrize("state", ["planning", "mapping", "reducing", "succeeded", "cancelled"])
def test_only_a_failed_run_is_retried(engine: Engine, state: str) -> None:
    run_id = _failed_run(engine, dead=[(Stage.MAP, 0)])
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(state=state))
    before, events = _chunks(engine, run_id), _event_kinds(engine, run_id)
    with pytest.raises(RunConflict, match=f"is {state}: only a failed run"), engine.begin() as c:
        chunk_repo.retry_dead(c, run_id, "operator")
    assert _chunks(engine, run_id) == before and _event_kinds(engine, run_id) == events


def test_a_run_without_dead_chunks_is_refused(engine: Engine) -> None:
    run_id = _failed_run(engine, dead=[])
    with pytest.raises(RunConflict, match="no dead chunk"), engine.begin() as conn:
        chunk_repo.retry_dead(conn, run_id, "operator")
    assert _run(engine, run_id)[:2] == ("failed", "boom")


def test_a_newer_generation_fences_the_retry_out(engine: Engine) -> None:
    # Given a failed run whose day was rerun since (generation 2)
    run_id = _failed_run(engine, dead=[(Stage.MAP, 2)])
    with engine.begin() as conn:
        old = run_repo.get_run(conn, run_id)
        assert old is not None
        assert run_repo.create_run(conn, old.job, old.day, 2, RunParams(), "t") is not None
    before = _chunks(engine, run_id)
    # Then retrying the old generation is refused and changes nothing
    with pytest.raises(RunConflict, match="newer generation #2"), engine.begin() as conn:
        chunk_repo.retry_dead(conn, run_id, "operator")
    assert _run(engine, run_id)[:2] == ("failed", "boom")
    assert _chunks(engine, run_id) == before


def test_a_retried_run_is_no_longer_finished_for_a_rerun(engine: Engine) -> None:
    run_id = _failed_run(engine, dead=[(Stage.MAP, 0)])
    with engine.begin() as conn:
        assert run_repo.lock_finished(conn, run_id)
        chunk_repo.retry_dead(conn, run_id, "operator")
    with engine.begin() as conn:
        assert not run_repo.lock_finished(conn, run_id)


def test_two_retries_one_wins(engine: Engine) -> None:
    run_id = _failed_run(engine, dead=[(Stage.MAP, 0)])
    with engine.begin() as conn:
        chunk_repo.retry_dead(conn, run_id, "a")
    with pytest.raises(RunConflict, match="is mapping"), engine.begin() as conn:
        chunk_repo.retry_dead(conn, run_id, "b")
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).where(RunEvent.run_id == run_id, RunEvent.kind == "run_retried")
        ).scalar_one()
    assert n == 1


@pytest.mark.slow
@pytest.mark.parametrize("rows", [5_000])
def test_retry_redoes_only_the_dead_chunk_and_the_day_verifies(
    cluster: Cluster, db: Engine
) -> None:
    # Given a day with a row that makes the job raise, and a run that failed on it
    add_poison_row(cluster)
    cluster.env.update(
        NIGHTFOLD_JOB_MODULES="tests.support.jobs",
        NIGHTFOLD_MAX_ATTEMPTS="2",
        NIGHTFOLD_CHUNK_ROWS="1000",
    )
    cluster.worker()
    master = cluster.master(PIPELINE_DAY, "--job", "poison_daily")
    assert master.wait(timeout=180) == RET_RUN_FAILED, cluster.log_tail()
    assert run_state(db) == "failed"
    done_before = set(done_events_per_chunk(db))
    with db.connect() as conn:
        (dead_id,) = conn.execute(select(Chunk.id).where(Chunk.state == "dead")).scalars()
    # When the job is fixed and the operator retries the day
    cluster.stop_all()
    cluster.env["NIGHTFOLD_TEST_POISON_FIXED"] = "1"
    cluster.worker()
    res = cluster.cli("retry", "--day", PIPELINE_DAY, "--job", "poison_daily")
    # Then the same generation succeeds, the dead chunk was the only map chunk redone,
    # no chunk completed twice, and the summaries verify
    assert res.returncode == 0, res.stdout + res.stderr + cluster.log_tail()
    assert "1 dead map chunk(s) pending again" in res.stdout
    assert "#1: succeeded" in res.stdout
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 1
    after = done_events_per_chunk(db)
    assert dead_id in after and dead_id not in done_before
    assert_no_chunk_done_twice(db)
    assert_verifies(cluster, PIPELINE_DAY, "--job", "poison_daily")
    # and a second retry of the succeeded run is refused with one line
    again = cluster.cli("retry", "--day", PIPELINE_DAY, "--job", "poison_daily")
    assert again.returncode == 5 and "only a failed run is retried" in again.stderr


def test_the_cli_reopens_without_waiting_and_refuses_in_one_line(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    run_id = _failed_run(engine, dead=[(Stage.MAP, 1)])
    with engine.connect() as conn:
        run = run_repo.get_run(conn, run_id)
    assert run is not None
    env = {"NIGHTFOLD_DATABASE_URL": url}
    day = run.day.isoformat()
    res = nightfold("retry", "--day", day, "--no-wait", env=env)
    assert res.returncode == 0, res.stderr
    assert "1 dead map chunk(s) pending again, run mapping" in res.stdout
    assert f"nightfold master run --day {day}" in res.stdout
    again = nightfold("retry", "--day", day, "--no-wait", env=env)
    assert again.returncode == 5
    assert one_line_error(again).endswith("is mapping: only a failed run is retried")
    none = nightfold("retry", "--day", "2001-01-01", env=env)
    assert none.returncode == 2 and "no run of merchant_daily" in one_line_error(none)
