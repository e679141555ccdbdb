"""KnownRuns: a worker process's runs, read once, bounded."""

from __future__ import annotations

import datetime as dt

from nightfold.common.db.chunks import KnownRuns
from nightfold.common.db.runs import RunInfo, RunParams
from nightfold.common.states import RunState


def _run(run_id: int) -> RunInfo:
    return RunInfo(
        id=run_id,
        job="merchant_daily",
        day=dt.date(2026, 11, 20),
        generation=1,
        state=RunState.MAPPING,
        owner=None,
        cancel_requested=False,
        params=RunParams(),
        error=None,
    )


def test_holds_the_runs_read_last_up_to_its_limit() -> None:
    known = KnownRuns()
    known.update((i, _run(i)) for i in range(KnownRuns.LIMIT + 5))
    assert len(known) == KnownRuns.LIMIT
    assert sorted(known) == list(range(5, KnownRuns.LIMIT + 5))
    known[7] = _run(7)  # a run it holds is replaced in place, nothing evicted
    assert len(known) == KnownRuns.LIMIT and 5 in known
