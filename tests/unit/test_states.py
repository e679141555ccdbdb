"""Every edge of the run and chunk state machines, and none more.

The expected edges are read from the design's own statement of the machines, the
two tables under "The state machines" in ``docs/architecture.md``, not copied
from ``common/states.py``: a transition added to (or dropped from) either one
without the other fails here.
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import pytest

from nightfold.common.states import (
    CHUNK_TRANSITIONS,
    RETRY_RUN_MOVES,
    RUN_TRANSITIONS,
    TERMINAL_RUN_STATES,
    ChunkState,
    RunState,
    after_failure,
    can_chunk_move,
    can_run_move,
)

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
S = TypeVar("S", bound=StrEnum)


def documented_edges(header: str, states: type[S]) -> set[tuple[S, S]]:
    """The (from, to) pairs of the markdown table whose header row starts ``| header |``.

    A row names one or more source states and one destination, each in backticks
    (``| `planning`, `mapping` | `failed` | why |``); a name that is not a state of
    ``states`` fails the test rather than being skipped.
    """
    lines = ARCHITECTURE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    edges: set[tuple[S, S]] = set()
    for line in itertools.takewhile(lambda ln: ln.startswith("|"), lines[start + 2 :]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        sources = re.findall(r"`([^`]+)`", cells[0])
        targets = re.findall(r"`([^`]+)`", cells[1])
        assert sources and len(targets) == 1, line
        edges |= {(states(src), states(targets[0])) for src in sources}
    assert edges, f"no rows under {header!r} in {ARCHITECTURE}"
    return edges


def test_run_edges_are_the_documented_ones() -> None:
    allowed = {(a, b) for a, b in itertools.product(RunState, RunState) if can_run_move(a, b)}
    assert allowed == documented_edges("run state", RunState)


def test_chunk_edges_are_the_documented_ones() -> None:
    allowed = {(a, b) for a, b in itertools.product(ChunkState, ChunkState) if can_chunk_move(a, b)}
    assert allowed == documented_edges("chunk state", ChunkState)


@pytest.mark.parametrize(
    ("table", "states"), [(RUN_TRANSITIONS, RunState), (CHUNK_TRANSITIONS, ChunkState)]
)
def test_every_state_has_a_row(table: dict[StrEnum, frozenset[StrEnum]], states: type) -> None:
    assert set(table) == set(states)


def test_terminal_runs_are_the_ones_only_an_operator_leaves() -> None:
    """Terminal: no master or worker moves the run on. The only edges out of a
    terminal state are the operator's retry of a failed run."""
    edges = documented_edges("run state", RunState)
    leaves = {src for src, dst in edges if (src, dst) not in RETRY_RUN_MOVES}
    assert set(RunState) - leaves == TERMINAL_RUN_STATES
    assert edges >= RETRY_RUN_MOVES
    for state in TERMINAL_RUN_STATES:
        assert {(state, dst) for dst in RUN_TRANSITIONS[state]} <= RETRY_RUN_MOVES
    assert {src for src, _ in RETRY_RUN_MOVES} == {RunState.FAILED}


def test_after_failure() -> None:
    assert after_failure(1, 3) is ChunkState.PENDING
    assert after_failure(2, 3) is ChunkState.PENDING
    assert after_failure(3, 3) is ChunkState.DEAD
    assert after_failure(4, 3) is ChunkState.DEAD
