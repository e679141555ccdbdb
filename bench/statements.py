"""Statements and round trips of one chunk's life in the database, counted.

A chunk's life, as a worker lives it: ``claim``, one lease ``heartbeat``,
``complete`` (each in its own transaction, as ``worker/processor.py`` and
``worker/heartbeat.py`` run them), events included. Two counts per step:

- **statements**: SQL statements the repository functions send, heard by a
  SQLAlchemy ``before_cursor_execute`` listener on the engine;
- **round trips**: every command that crosses the wire to MariaDB (statements,
  ``COMMIT``, ``ROLLBACK``, the pool's pre-ping), counted at PyMySQL's one
  send method (``_execute_command``) on every connection the pool opens. On
  SQLite (no wire) the same figure counts statements plus ``COMMIT``/``ROLLBACK``.

Two lives are counted: a chunk **alone** (``chunks.claim``, ``chunks.heartbeat``,
``chunks.complete``), and a chunk among **8 claimed and completed together**, as
the 8 processing threads of one worker process do through the worker's group
commit (``chunks.claim_many`` / ``chunks.complete_many``; each chunk still beats
alone), per chunk. ``db_statements_per_chunk`` is the latter; before issue 17
(no batching) both were 7 statements and 16 round trips.

    python -m bench.statements            # on a fresh MariaDB database (and SQLite)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event


@dataclass
class Counts:
    """What one engine sent: statements (with their SQL) and round trips."""

    statements: int = 0
    round_trips: int = 0
    sql: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.statements = 0
        self.round_trips = 0
        self.sql.clear()


def count(engine: Engine) -> Counts:
    """Attach the counters to ``engine`` (before any connection is opened, so the
    wire counter sits on every DBAPI connection); returns the live counts."""
    counts = Counts()

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sql.lstrip().upper().startswith("BEGIN"):
            return  # SQLite's BEGIN IMMEDIATE: transaction control, a round trip only
        counts.statements += 1
        counts.sql.append(" ".join(sql.split())[:160])

    event.listen(engine, "before_cursor_execute", statement)
    if engine.dialect.name == "mysql":

        def wrap(dbapi_conn: Any, _record: Any) -> None:
            send = dbapi_conn._execute_command

            def counted(command: int, sql: Any) -> Any:
                counts.round_trips += 1
                return send(command, sql)

            dbapi_conn._execute_command = counted

        event.listen(engine, "connect", wrap)
    else:

        def trip(*_: Any) -> None:
            counts.round_trips += 1

        event.listen(engine, "before_cursor_execute", trip)
        event.listen(engine, "commit", trip)
        event.listen(engine, "rollback", trip)
    return counts


@dataclass
class Step:
    statements: int
    round_trips: int
    sql: list[str]


def _measure(counts: Counts, fn: Callable[[], Any]) -> tuple[Any, Step]:
    counts.reset()
    out = fn()
    return out, Step(counts.statements, counts.round_trips, list(counts.sql))


BATCH = 8
"""Chunks claimed and completed together in the batched life (8 threads per process)."""


def chunk_life(url: str) -> dict[str, Any]:
    """Claim, beat and complete one chunk on a fresh database at ``url`` (migrated
    here); the statements and round trips of each step, and their sum."""
    from nightfold.common.db import chunks as chunk_repo
    from nightfold.common.db import runs as run_repo
    from nightfold.common.db.chunks import ChunkSpec
    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.migrate import upgrade
    from nightfold.common.keys import KeyRange
    from nightfold.common.states import RunState, Stage

    setup = make_engine(url)
    upgrade(setup)
    with setup.begin() as conn:
        run = run_repo.create_run(
            conn, "merchant_daily", dt.date(2026, 11, 20), 1, run_repo.RunParams(), "counter"
        )
        assert run is not None
        run_repo.move(conn, run.id, RunState.PLANNING, RunState.MAPPING, actor="counter")
        n = 2 + BATCH
        specs = [
            ChunkSpec(Stage.MAP, i, KeyRange(b"k%04d" % i, b"k%04d" % (i + 1))) for i in range(n)
        ]
        chunk_repo.insert_plan(conn, run.id, specs)
        chunk_repo.open_window(conn, run.id, Stage.MAP, n, "counter")
        ids = chunk_repo.claimable(conn, n)
    setup.dispose()

    engine = make_engine(url, pool_size=1)
    counts = count(engine)
    me = "counter:1:abc"
    # warm up: the first claim opens the connection and fills the caches
    with engine.begin() as conn:
        warm = chunk_repo.claim(conn, ids[0].chunk_id, me)
    assert warm is not None

    def claim() -> Any:
        with engine.begin() as conn:
            return chunk_repo.claim(conn, ids[1].chunk_id, me)

    claimed, claim_step = _measure(counts, claim)
    assert claimed is not None

    def beat() -> Any:
        with engine.begin() as conn:
            return chunk_repo.heartbeat(conn, claimed, 10, b"k0001x")

    stop, beat_step = _measure(counts, beat)
    assert stop is False

    def complete() -> None:
        with engine.begin() as conn:
            chunk_repo.complete(conn, claimed, 10, 0)

    _, complete_step = _measure(counts, complete)
    steps = {"claim": claim_step, "heartbeat": beat_step, "complete": complete_step}

    batch = [c.chunk_id for c in ids[2:]]
    known = chunk_repo.KnownRuns({run.id: warm.run})  # a worker has claimed in this run before

    def claim_many() -> Any:
        with engine.begin() as conn:
            return chunk_repo.claim_many(conn, batch, me, known)

    claims, claim_many_step = _measure(counts, claim_many)
    assert len(claims) == BATCH

    def beat_one() -> Any:
        with engine.begin() as conn:
            return chunk_repo.heartbeat(conn, next(iter(claims.values())), 10, b"k")

    _, beat_one_step = _measure(counts, beat_one)

    def complete_many() -> Any:
        with engine.begin() as conn:
            return chunk_repo.complete_many(
                conn, [chunk_repo.Completion(c, 10, 0) for c in claims.values()]
            )

    lost, complete_many_step = _measure(counts, complete_many)
    assert not lost
    engine.dispose()
    batched = {
        "claim_many": claim_many_step,
        "heartbeat": beat_one_step,
        "complete_many": complete_many_step,
    }

    def per_chunk(attr: str) -> float:
        shared = getattr(claim_many_step, attr) + getattr(complete_many_step, attr)
        return round(shared / BATCH + getattr(beat_one_step, attr), 3)

    return {
        "statements": {k: s.statements for k, s in steps.items()},
        "round_trips": {k: s.round_trips for k, s in steps.items()},
        "sql": {k: s.sql for k, s in steps.items()},
        "statements_per_chunk": sum(s.statements for s in steps.values()),
        "round_trips_per_chunk": sum(s.round_trips for s in steps.values()),
        "batch": BATCH,
        "batched_statements": {k: s.statements for k, s in batched.items()},
        "batched_round_trips": {k: s.round_trips for k, s in batched.items()},
        "batched_sql": {k: s.sql for k, s in batched.items()},
        "batched_statements_per_chunk": per_chunk("statements"),
        "batched_round_trips_per_chunk": per_chunk("round_trips"),
    }


@contextlib.contextmanager
def _sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'count.db'}"


BEFORE = {"statements": 7, "round_trips": 16}
"""One chunk's life on MariaDB before issue 17 (main at c9db38c, counted by this module)."""


def run(quick: bool = False) -> dict[str, Any]:
    """Count on SQLite and on a fresh MariaDB database; write ``statements.json``."""
    from bench.common import fresh_mariadb, log, write_result

    with _sqlite_url() as url:
        sqlite = chunk_life(url)
    with fresh_mariadb("bs") as url:
        mariadb = chunk_life(url)
    for name, life in (("MariaDB", mariadb), ("SQLite", sqlite)):
        log(
            f"statements: {name}: alone {life['statements']} = {life['statements_per_chunk']} "
            f"statements, {life['round_trips']} = {life['round_trips_per_chunk']} round trips; "
            f"in a batch of {BATCH}: {life['batched_statements']} -> "
            f"{life['batched_statements_per_chunk']} statements and "
            f"{life['batched_round_trips_per_chunk']} round trips per chunk"
        )
    result = {
        "db_statements_per_chunk": mariadb["batched_statements_per_chunk"],
        "db_round_trips_per_chunk": mariadb["batched_round_trips_per_chunk"],
        "db_statements_per_chunk_alone": mariadb["statements_per_chunk"],
        "db_round_trips_per_chunk_alone": mariadb["round_trips_per_chunk"],
        "db_statements_per_chunk_before": BEFORE["statements"],
        "db_round_trips_per_chunk_before": BEFORE["round_trips"],
        "db_statements_target": f"<= {BEFORE['statements'] / 2}",
        "db_statements_met": mariadb["batched_statements_per_chunk"] <= BEFORE["statements"] / 2,
        "life": "claim + one lease heartbeat + complete (events included), per chunk",
        "mariadb": mariadb,
        "sqlite": sqlite,
    }
    write_result("statements", result)
    return result


if __name__ == "__main__":
    run()
