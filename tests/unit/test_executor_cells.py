"""The map writes no cell above the run's ``max_cell_bytes`` and the reduce rejoins the
pieces exactly, on the embedded store (issue 13). With a tiny bound every group's
partial is split, and the summaries still equal the one-process oracle's."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nightfold.common.db.chunks import Claim
from nightfold.common.db.runs import RunInfo, RunParams
from nightfold.common.errors import CellTooLarge, CorruptPartial
from nightfold.common.jobs import get_job
from nightfold.common.keys import (
    PARTIALS_TABLE,
    KeyRange,
    combine_prefix,
    partial_key,
    partial_prefix,
    prefix_range,
)
from nightfold.common.states import RunState, Stage
from nightfold.common.store.local import LocalStore
from nightfold.jobs.merchant_daily import MerchantDaily, MerchantPartial
from nightfold.ops.seeding import seed_day
from nightfold.ops.verify import compute_expected, read_stored
from nightfold.worker.executor import execute, run_map, run_reduce
from tests.support.segments import MemoryIO, NoLease

DAY = dt.date(2026, 11, 22)
ALL = KeyRange(b"", b"")
BUCKETS = 3


LEASE: Any = NoLease()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "store.sqlite")
    for table, family in ((PARTIALS_TABLE, "p"), ("nightfold_summary", "s")):
        s.ensure_table(table, [family])
    yield s
    s.close()


def claim(stage: Stage, idx: int, key_range: KeyRange, max_cell_bytes: int) -> Claim:
    params = RunParams(reduce_buckets=BUCKETS, max_cell_bytes=max_cell_bytes, salt_buckets=4)
    run = RunInfo(1, "merchant_daily", DAY, 1, RunState.MAPPING, "m", False, params, None)
    return Claim(1, run, stage, idx, key_range, "w", 1)


class Unsharded(MerchantDaily):
    """merchant_daily reducing whole groups (no combine stage)."""

    sharded = False


def map_one(c: Claim, store: LocalStore, job: Any, io: MemoryIO) -> None:
    """Run the map chunk and commit its segments (as the processor does)."""
    io.claim = c
    io.finish(run_map(c, store, job, LEASE, io).last)


def reduce_all(
    store: LocalStore, max_cell_bytes: int, io: MemoryIO | None = None, job: Any = None
) -> None:
    """Every reduce item, then (a sharded job) every combine item."""
    job = job or get_job("merchant_daily")
    io = io or MemoryIO()
    for bucket in range(BUCKETS):
        rng = prefix_range(partial_prefix("merchant_daily", DAY, 1, bucket))
        c = claim(Stage.REDUCE, bucket, rng, max_cell_bytes)
        run_reduce(c, store, job, LEASE, io.committed())
    for bucket in range(BUCKETS if job.sharded else 0):
        rng = prefix_range(combine_prefix("merchant_daily", DAY, 1, bucket))
        execute(claim(Stage.COMBINE, bucket, rng, max_cell_bytes), store, job, LEASE, io)


@pytest.mark.parametrize("bound", [1, 97, 1 << 20])
def test_no_partial_cell_exceeds_the_bound_and_summaries_are_exact(
    store: LocalStore, bound: int
) -> None:
    seed_day(store, DAY, 1500, merchants=20, salt_buckets=4)
    job = get_job("merchant_daily")
    # Given two map chunks cutting the day in two
    cut = b"02|"
    io = MemoryIO()
    map_one(claim(Stage.MAP, 0, KeyRange(b"", cut), bound), store, job, io)
    map_one(claim(Stage.MAP, 1, KeyRange(cut, b""), bound), store, job, io)
    # Then no partial cell is above the bound
    cells = [v for _, row in store.scan(PARTIALS_TABLE, ALL) for v in row.values()]
    assert cells and max(map(len, cells)) <= bound
    # And the reduce rejoins the pieces: the summaries equal the oracle's (the reduce's
    # bound only limits summary cells, which are never split)
    reduce_all(store, 1 << 20, io)
    assert read_stored(store, job, DAY) == compute_expected(store, job, DAY, 4)


def test_legacy_single_cell_partials_are_still_reduced(store: LocalStore) -> None:
    # Given a partial written by a version that did not split (qualifier p:<group>)
    job = Unsharded()
    p = MerchantPartial()
    p.paid[500] = 2
    p.customers.add(b"c1")
    bucket = job.bucket("m1", BUCKETS)
    store.put_many(
        PARTIALS_TABLE,
        [(partial_key("merchant_daily", DAY, 1, bucket, 0), {b"p:m1": job.encode(p)})],
    )
    # When it is reduced
    reduce_all(store, 1 << 20, job=job)
    # Then its summary is there
    assert read_stored(store, job, DAY)["m1"] == job.finalize("m1", p)


def test_a_missing_piece_fails_the_reduce_with_the_row(store: LocalStore) -> None:
    key = partial_key("merchant_daily", DAY, 1, 0, 0)
    store.put_many(PARTIALS_TABLE, [(key, {b"p:m1\xff0000/0002": b"{"})])
    with pytest.raises(CorruptPartial, match=r"partial row .*1 of 2 pieces missing"):
        reduce_all(store, 1 << 20)


class WideSummary(MerchantDaily):
    name = "wide_summary"

    def finalize(self, group: str, partial: MerchantPartial) -> dict[bytes, bytes]:
        return {**super().finalize(group, partial), b"s:wide": b"w" * 300}


def test_a_summary_cell_above_the_bound_is_a_job_error_naming_group_and_column(
    store: LocalStore,
) -> None:
    seed_day(store, DAY, 200, merchants=3, salt_buckets=4)
    job = WideSummary()
    c = claim(Stage.MAP, 0, ALL, 256)
    c = dataclasses.replace(c, run=dataclasses.replace(c.run, job="wide_summary"))
    io = MemoryIO()
    map_one(c, store, job, io)
    for bucket in range(BUCKETS):
        rng = prefix_range(partial_prefix("wide_summary", DAY, 1, bucket))
        r = dataclasses.replace(c, stage=Stage.REDUCE, idx=bucket, key_range=rng)
        run_reduce(r, store, job, LEASE, io.committed())
    for bucket in range(BUCKETS):
        rng = prefix_range(combine_prefix("wide_summary", DAY, 1, bucket))
        r = dataclasses.replace(c, stage=Stage.COMBINE, idx=bucket, key_range=rng)
        try:
            execute(r, store, job, LEASE, io)
        except CellTooLarge as exc:
            assert "summary cell 's:wide' of group 'm" in str(exc)
            assert "300 bytes, above max_cell_bytes=256" in str(exc)
            return
    pytest.fail("no CellTooLarge")
