"""Every edge of the run and chunk state machines, and none more."""

from __future__ import annotations

import itertools

from nightfold.common.states import (
    CHUNK_TRANSITIONS,
    RUN_TRANSITIONS,
    TERMINAL_RUN_STATES,
    ChunkState,
    RunState,
    after_failure,
    can_chunk_move,
    can_run_move,
)


def test_run_edges() -> None:
    allowed = {(a, b) for a, b in itertools.product(RunState, RunState) if can_run_move(a, b)}
    assert allowed == {
        (RunState.PLANNING, RunState.MAPPING),
        (RunState.MAPPING, RunState.REDUCING),
        (RunState.REDUCING, RunState.SUCCEEDED),
        *(
            (s, d)
            for s in (RunState.PLANNING, RunState.MAPPING, RunState.REDUCING)
            for d in (RunState.FAILED, RunState.CANCELLED)
        ),
    }


def test_terminal_runs_never_move() -> None:
    for state in TERMINAL_RUN_STATES:
        assert RUN_TRANSITIONS[state] == frozenset()


def test_chunk_edges() -> None:
    allowed = {(a, b) for a, b in itertools.product(ChunkState, ChunkState) if can_chunk_move(a, b)}
    assert allowed == {
        (ChunkState.PENDING, ChunkState.QUEUED),
        (ChunkState.PENDING, ChunkState.DEAD),
        (ChunkState.QUEUED, ChunkState.CLAIMED),
        (ChunkState.CLAIMED, ChunkState.DONE),
        (ChunkState.CLAIMED, ChunkState.PENDING),
        (ChunkState.CLAIMED, ChunkState.DEAD),
    }
    assert CHUNK_TRANSITIONS[ChunkState.DONE] == frozenset()


def test_after_failure() -> None:
    assert after_failure(1, 3) is ChunkState.PENDING
    assert after_failure(2, 3) is ChunkState.PENDING
    assert after_failure(3, 3) is ChunkState.DEAD
    assert after_failure(4, 3) is ChunkState.DEAD
