"""Run and chunk states, and the transitions between them.

The tables here are the single statement of the state machines of DESIGN.md;
repository functions only ever make transitions listed here, each as one
conditional UPDATE, and the unit tests walk every edge.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    PLANNING = "planning"
    MAPPING = "mapping"
    REDUCING = "reducing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ChunkState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    CLAIMED = "claimed"
    DONE = "done"
    DEAD = "dead"


class Stage(StrEnum):
    MAP = "map"
    REDUCE = "reduce"


TERMINAL_RUN_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PLANNING: frozenset({RunState.MAPPING, RunState.FAILED, RunState.CANCELLED}),
    RunState.MAPPING: frozenset({RunState.REDUCING, RunState.FAILED, RunState.CANCELLED}),
    RunState.REDUCING: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
}

CHUNK_TRANSITIONS: dict[ChunkState, frozenset[ChunkState]] = {
    # the master opens the window
    ChunkState.PENDING: frozenset({ChunkState.QUEUED, ChunkState.DEAD}),
    # a worker claims; nothing else leaves queued
    ChunkState.QUEUED: frozenset({ChunkState.CLAIMED}),
    # completed (fenced), failed or lease expired (back to pending), given up
    ChunkState.CLAIMED: frozenset({ChunkState.DONE, ChunkState.PENDING, ChunkState.DEAD}),
    ChunkState.DONE: frozenset(),
    ChunkState.DEAD: frozenset(),
}


def can_run_move(src: RunState, dst: RunState) -> bool:
    """Whether a run may go from ``src`` to ``dst``."""
    return dst in RUN_TRANSITIONS[src]


def can_chunk_move(src: ChunkState, dst: ChunkState) -> bool:
    """Whether a chunk may go from ``src`` to ``dst``."""
    return dst in CHUNK_TRANSITIONS[src]


def after_failure(attempt: int, max_attempts: int) -> ChunkState:
    """Where a claimed chunk goes when its attempt fails or its lease expires."""
    return ChunkState.DEAD if attempt >= max_attempts else ChunkState.PENDING
