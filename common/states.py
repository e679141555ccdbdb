"""Run and chunk states, and the transitions between them.

The tables here are the single statement of the state machines of DESIGN.md
(and of the tables in docs/architecture.md, which a unit test holds them to).
They are law, not documentation: every repository function that changes a
state goes through ``runs.move`` or ``chunks.move``, which call
:func:`check_run_move` / :func:`check_chunk_move` before issuing their one
conditional UPDATE, so a move not listed here raises
:class:`~nightfold.common.errors.IllegalTransition` instead of reaching a row.
"""

from __future__ import annotations

from enum import StrEnum

from nightfold.common.errors import IllegalTransition


class RunState(StrEnum):
    PLANNING = "planning"
    MAPPING = "mapping"
    REDUCING = "reducing"
    COMBINING = "combining"
    """Only for jobs that shard groups (``Job.sharded``): the per-shard results
    of the reduce are combined into each group's summary row."""
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
    COMBINE = "combine"
    """Planned only for a sharded job: one item per reduce bucket, after the reduce."""


TERMINAL_RUN_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
"""No master or worker moves a run out of these; a failed run leaves only by an
operator's retry (:data:`RETRY_RUN_MOVES`)."""
WORKING_RUN_STATES = (RunState.MAPPING, RunState.REDUCING, RunState.COMBINING)
"""The states in which workers claim and execute chunks (a stage is running)."""

RUN_STATE_OF_STAGE = {
    Stage.MAP: RunState.MAPPING,
    Stage.REDUCE: RunState.REDUCING,
    Stage.COMBINE: RunState.COMBINING,
}
"""The run's state while a stage's chunks run (stages run in :class:`Stage` order)."""

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PLANNING: frozenset({RunState.MAPPING, RunState.FAILED, RunState.CANCELLED}),
    RunState.MAPPING: frozenset({RunState.REDUCING, RunState.FAILED, RunState.CANCELLED}),
    RunState.REDUCING: frozenset(
        {RunState.COMBINING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}
    ),
    RunState.COMBINING: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}),
    RunState.SUCCEEDED: frozenset(),
    # only an operator's retry (``nightfold retry``): back to the stage of its dead chunks
    RunState.FAILED: frozenset({RunState.MAPPING, RunState.REDUCING, RunState.COMBINING}),
    RunState.CANCELLED: frozenset(),
}

RETRY_RUN_MOVES = frozenset(
    {
        (RunState.FAILED, RunState.MAPPING),
        (RunState.FAILED, RunState.REDUCING),
        (RunState.FAILED, RunState.COMBINING),
    }
)
"""The edges out of a terminal state: taken by an operator's retry, never by a master
or a worker. Terminal means nothing moves the run on by itself."""

CHUNK_TRANSITIONS: dict[ChunkState, frozenset[ChunkState]] = {
    # the master opens the window
    ChunkState.PENDING: frozenset({ChunkState.QUEUED, ChunkState.DEAD}),
    # a worker claims; nothing else leaves queued
    ChunkState.QUEUED: frozenset({ChunkState.CLAIMED}),
    # completed (fenced), failed or lease expired (back to pending), given up
    ChunkState.CLAIMED: frozenset({ChunkState.DONE, ChunkState.PENDING, ChunkState.DEAD}),
    ChunkState.DONE: frozenset(),
    # an operator's retry of the failed run: attempts start again from zero
    ChunkState.DEAD: frozenset({ChunkState.PENDING}),
}


def can_run_move(src: RunState, dst: RunState) -> bool:
    """Whether a run may go from ``src`` to ``dst``."""
    return dst in RUN_TRANSITIONS[src]


def can_chunk_move(src: ChunkState, dst: ChunkState) -> bool:
    """Whether a chunk may go from ``src`` to ``dst``."""
    return dst in CHUNK_TRANSITIONS[src]


def check_run_move(src: RunState, dst: RunState) -> None:
    """Raise IllegalTransition unless a run may go from ``src`` to ``dst``."""
    if not can_run_move(src, dst):
        raise IllegalTransition("run", src.value, dst.value)


def check_chunk_move(src: ChunkState, dst: ChunkState) -> None:
    """Raise IllegalTransition unless a chunk may go from ``src`` to ``dst``."""
    if not can_chunk_move(src, dst):
        raise IllegalTransition("chunk", src.value, dst.value)


def after_failure(attempt: int, max_attempts: int) -> ChunkState:
    """Where a claimed chunk goes when its attempt fails or its lease expires."""
    return ChunkState.DEAD if attempt >= max_attempts else ChunkState.PENDING
