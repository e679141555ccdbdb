"""gc's choice of generations (``master/gc.collectable``), a pure function."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.db.cleanup import Generation
from nightfold.common.states import TERMINAL_RUN_STATES, RunState
from nightfold.master.gc import collectable

generations = st.lists(st.sampled_from(list(RunState)), max_size=8).map(
    lambda states: [Generation(100 + g, g, s) for g, s in enumerate(states, start=1)]
)


@given(generations, st.booleans())
def test_only_finished_runs_go_and_the_latest_success_stays(
    runs: list[Generation], everything: bool
) -> None:
    chosen = collectable(runs, everything=everything)
    finished = [r for r in runs if r.state in TERMINAL_RUN_STATES]
    succeeded = [r.generation for r in runs if r.state is RunState.SUCCEEDED]
    if everything or not succeeded:
        assert chosen == finished
    else:
        assert chosen == [r for r in finished if r.generation != max(succeeded)]


def test_example() -> None:
    runs = [
        Generation(1, 1, RunState.SUCCEEDED),
        Generation(2, 2, RunState.FAILED),
        Generation(3, 3, RunState.SUCCEEDED),
        Generation(4, 4, RunState.MAPPING),
    ]
    assert [r.generation for r in collectable(runs, everything=False)] == [1, 2]
    assert [r.generation for r in collectable(runs, everything=True)] == [1, 2, 3]
