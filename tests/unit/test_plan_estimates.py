"""Planning a small clustered day on the embedded store: the probes' extrapolation
stays within a few times the truth. Two chaos trials (seed 694806263, trials 125
and 189) hung on days like these: a 5,652-row day estimated at 2.6M rows and
planned as 11,671 empty chunks, a 4,926-row day as 15,976; the runs could not
finish inside the trial's 300 s."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from nightfold.common.keys import day_ranges
from nightfold.common.store import open_store
from nightfold.master.planner import plan_map
from nightfold.ops.seeding import seed_day


@pytest.mark.parametrize(
    ("day", "rows", "salt", "chunk_rows", "seed"),
    [
        (dt.date(2031, 5, 6), 5652, 4, 226, 862473299),
        (dt.date(2031, 7, 9), 4926, 4, 1231, 867877721),
        (dt.date(2031, 1, 1), 20_000, 16, 300, 1),
    ],
)
def test_a_clustered_day_is_not_planned_into_a_flood_of_chunks(
    tmp_path: Path, day: dt.date, rows: int, salt: int, chunk_rows: int, seed: int
) -> None:
    store = open_store(f"local://{tmp_path / 'store.sqlite'}")
    try:
        seed_day(store, day, rows, salt_buckets=salt, seed=seed)
        plan = plan_map(store, "nightfold_raw", day_ranges(day, salt), chunk_rows)
    finally:
        store.close()
    estimate = sum(c.rows for c in plan.chunks)
    assert rows / 4 <= estimate <= rows * 4
    assert len(plan.chunks) <= 4 * rows / chunk_rows + plan.pieces
