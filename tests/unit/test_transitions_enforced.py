"""The state tables are law: the repository refuses every (from, to) pair they do
not list, before issuing any UPDATE, and makes every pair they do list.

The pairs are generated from the enums minus ``common/states.py``'s tables (which
``test_states.py`` holds to the docs' tables), so an edge dropped from a table is
refused here at once. On SQLite; ``tests/integration/test_repository.py`` repeats
a handful on MariaDB.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.db.runs import RunParams
from nightfold.common.errors import IllegalTransition
from nightfold.common.keys import KeyRange
from nightfold.common.states import (
    CHUNK_TRANSITIONS,
    RUN_TRANSITIONS,
    ChunkState,
    RunState,
    Stage,
)

DAY = dt.date(2026, 11, 22)
ILLEGAL_RUN = [
    (a, b) for a, b in itertools.product(RunState, RunState) if b not in RUN_TRANSITIONS[a]
]
LEGAL_RUN = [(a, b) for a, targets in RUN_TRANSITIONS.items() for b in sorted(targets)]
ILLEGAL_CHUNK = [
    (a, b) for a, b in itertools.product(ChunkState, ChunkState) if b not in CHUNK_TRANSITIONS[a]
]
LEGAL_CHUNK = [(a, b) for a, targets in CHUNK_TRANSITIONS.items() for b in sorted(targets)]
_generations = itertools.count(1)


def _ids(pair: tuple[RunState, RunState] | tuple[ChunkState, ChunkState]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated SQLite database for the module: each test makes its own run."""
    path: Path = tmp_path_factory.mktemp("transitions") / "nightfold.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _run_in(engine: Engine, state: RunState) -> int:
    """A new run with one map chunk, put in ``state`` behind the repository's back."""
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", DAY, next(_generations), RunParams(), "t")
        assert run is not None
        chunk_repo.insert_plan(conn, run.id, [ChunkSpec(Stage.MAP, 0, KeyRange(b"a", b"b"))])
        conn.execute(update(Run).where(Run.id == run.id).values(state=state.value))
    return run.id


def _chunk_in(engine: Engine, state: ChunkState) -> int:
    run_id = _run_in(engine, RunState.MAPPING)
    with engine.begin() as conn:
        chunk_id = conn.execute(select(Chunk.id).where(Chunk.run_id == run_id)).scalar_one()
        conn.execute(update(Chunk).where(Chunk.id == chunk_id).values(state=state.value))
    return int(chunk_id)


def _run_state(engine: Engine, run_id: int) -> RunState:
    with engine.connect() as conn:
        info = run_repo.get_run(conn, run_id)
    assert info is not None
    return info.state


def _events(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RunEvent)).scalar_one())


@pytest.mark.parametrize(("src", "dst"), ILLEGAL_RUN, ids=map(_ids, ILLEGAL_RUN))
def test_an_illegal_run_move_is_refused(sqlite: Engine, src: RunState, dst: RunState) -> None:
    # Given a run that really is in src
    run_id = _run_in(sqlite, src)
    events = _events(sqlite)
    # When the repository is asked for src -> dst, a pair not in RUN_TRANSITIONS
    refused = pytest.raises(IllegalTransition, match=f"illegal run transition {src} -> {dst}")
    with refused, sqlite.begin() as conn:
        run_repo.move(conn, run_id, src, dst, actor="t")
    # Then the row and the event log are untouched
    assert _run_state(sqlite, run_id) is src
    assert _events(sqlite) == events


def test_one_illegal_source_among_several_is_refused(sqlite: Engine) -> None:
    # Given a mapping run, and a move naming mapping (legal) and succeeded (illegal) as sources
    run_id = _run_in(sqlite, RunState.MAPPING)
    # Then the move is refused although the row's own state could move
    with pytest.raises(IllegalTransition), sqlite.begin() as conn:
        run_repo.move(
            conn, run_id, (RunState.MAPPING, RunState.SUCCEEDED), RunState.FAILED, actor="t"
        )
    assert _run_state(sqlite, run_id) is RunState.MAPPING


@pytest.mark.parametrize(("src", "dst"), LEGAL_RUN, ids=map(_ids, LEGAL_RUN))
def test_a_legal_run_move_is_made(sqlite: Engine, src: RunState, dst: RunState) -> None:
    run_id = _run_in(sqlite, src)
    with sqlite.begin() as conn:
        assert run_repo.move(conn, run_id, src, dst, actor="t")
    assert _run_state(sqlite, run_id) is dst


@pytest.mark.parametrize(("src", "dst"), ILLEGAL_CHUNK, ids=map(_ids, ILLEGAL_CHUNK))
def test_an_illegal_chunk_move_is_refused(sqlite: Engine, src: ChunkState, dst: ChunkState) -> None:
    # Given a chunk that really is in src
    chunk_id = _chunk_in(sqlite, src)
    # When the repository is asked for src -> dst, a pair not in CHUNK_TRANSITIONS
    refused = pytest.raises(IllegalTransition, match=f"illegal chunk transition {src} -> {dst}")
    with refused, sqlite.begin() as conn:
        chunk_repo.move(conn, Chunk.id == chunk_id, src, dst)
    # Then the row is untouched
    with sqlite.connect() as conn:
        state = conn.execute(select(Chunk.state).where(Chunk.id == chunk_id)).scalar_one()
    assert state == src.value


@pytest.mark.parametrize(("src", "dst"), LEGAL_CHUNK, ids=map(_ids, LEGAL_CHUNK))
def test_a_legal_chunk_move_is_made(sqlite: Engine, src: ChunkState, dst: ChunkState) -> None:
    chunk_id = _chunk_in(sqlite, src)
    with sqlite.begin() as conn:
        assert chunk_repo.move(conn, Chunk.id == chunk_id, src, dst) == 1
    with sqlite.connect() as conn:
        state = conn.execute(select(Chunk.state).where(Chunk.id == chunk_id)).scalar_one()
    assert state == dst.value
