"""The statements and round trips of one chunk's life, counted by the engine
listener of ``bench/statements.py`` on SQLite and MariaDB: a regression guard on
the work each claim, heartbeat and completion puts on the database (issue 17:
7 statements and 16 round trips on MariaDB before)."""

from __future__ import annotations

from bench.statements import BATCH, chunk_life


def test_a_chunks_life_in_statements_and_round_trips(database_url: str) -> None:
    life = chunk_life(database_url)
    # alone: claim (read, conditional UPDATE, event), one-statement heartbeat,
    # complete (fenced UPDATE, event)
    assert life["statements"] == {"claim": 3, "heartbeat": 1, "complete": 2}
    if database_url.startswith("mysql"):
        # no pre-ping of a hot connection, no pool ROLLBACK after COMMIT
        assert life["round_trips"] == {"claim": 4, "heartbeat": 2, "complete": 3}
    # in a batch of 8, as a worker claims once it knows the run (its row is not read
    # again): claim_many and complete_many cost the same whatever the size
    assert life["batched_statements"] == {"claim_many": 3, "heartbeat": 1, "complete_many": 2}
    assert life["batched_statements_per_chunk"] == (3 + 2) / BATCH + 1 <= 7 / 2
