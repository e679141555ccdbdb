"""The reduce's reconcile: after its puts and deletes, a reduce item's summary rows
are exactly the new generation's -- no stale row, no stale cell -- and a redo
(whole or after a partial apply) converges to the same rows."""

from __future__ import annotations

import datetime as dt
import zlib

from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.jobs import get_job
from nightfold.common.keys import summary_key, summary_prefix
from nightfold.common.store.base import CellDelete, Columns, Row
from nightfold.worker.reconcile import Changes, owned_by, reconcile

DAY = dt.date(2026, 11, 22)
PREFIX = summary_prefix(DAY)


def apply(stored: dict[bytes, Columns], puts: list[Row], deletes: list[CellDelete]) -> dict:
    """What a store holds after the writes: a model of put_many + delete_cells."""
    rows = {key: dict(cells) for key, cells in stored.items()}
    for key, cells in puts:
        rows.setdefault(key, {}).update(cells)
    for key, columns in deletes:
        if columns is None:
            rows.pop(key, None)
        else:
            for col in columns:
                rows.get(key, {}).pop(col, None)
    return {key: cells for key, cells in rows.items() if cells}


keys = st.sampled_from([PREFIX + g for g in (b"m1", b"m2", b"m3", b"m4", b"~invalid")])
columns = st.sampled_from([b"s:orders", b"s:min_order_cents", b"s:p95_order_cents", b"s:x"])
values = st.sampled_from([b"0", b"1", b"12", b"[]"])
rows = st.dictionaries(keys, st.dictionaries(columns, values, max_size=4), max_size=5)


def test_a_vanished_group_and_vanished_cells_are_deleted() -> None:
    # Given the previous generation's rows
    stored = {
        PREFIX + b"m1": {b"s:orders": b"3", b"s:min_order_cents": b"100"},
        PREFIX + b"m2": {b"s:orders": b"5"},
        PREFIX + b"m3": {b"s:orders": b"7"},
    }
    # When the new generation has m1 without valid orders, no m2, m3 unchanged, a new m4
    wanted = {
        PREFIX + b"m1": {b"s:orders": b"0", b"s:malformed": b"3"},
        PREFIX + b"m3": {b"s:orders": b"7"},
        PREFIX + b"m4": {b"s:orders": b"1"},
    }
    changes = reconcile(stored, wanted)
    # Then only changed cells are put, m2 goes whole, m1 loses its min
    assert changes.puts == [
        (PREFIX + b"m1", {b"s:malformed": b"3", b"s:orders": b"0"}),
        (PREFIX + b"m4", {b"s:orders": b"1"}),
    ]
    assert changes.deletes == [
        (PREFIX + b"m1", [b"s:min_order_cents"]),
        (PREFIX + b"m2", None),
    ]


def test_identical_rows_need_nothing() -> None:
    stored = {PREFIX + b"m1": {b"s:orders": b"3"}}
    assert reconcile(stored, stored).empty
    assert reconcile({}, {}) == Changes()


@given(stored=rows, wanted=rows)
def test_applying_the_changes_gives_exactly_the_wanted_rows(stored: dict, wanted: dict) -> None:
    changes = reconcile(stored, wanted)
    after = apply(stored, changes.puts, changes.deletes)
    assert after == {k: v for k, v in wanted.items() if v}
    # and a redo finds nothing left to do
    assert reconcile(after, wanted).empty


@given(stored=rows, wanted=rows)
def test_only_cells_that_differ_are_put(stored: dict, wanted: dict) -> None:
    for key, cells in reconcile(stored, wanted).puts:
        assert cells
        assert all(
            stored.get(key, {}).get(col) != val == wanted[key][col] for col, val in cells.items()
        )


@given(stored=rows, wanted=rows, data=st.data())
def test_a_redo_after_a_partial_apply_converges(
    stored: dict, wanted: dict, data: st.DataObject
) -> None:
    # Given a reduce item killed after some of its puts and deletes
    changes = reconcile(stored, wanted)
    puts = data.draw(st.integers(0, len(changes.puts)))
    deletes = data.draw(st.integers(0, len(changes.deletes)))
    half = apply(stored, changes.puts[:puts], changes.deletes[:deletes])
    # When the item is redone from what is stored now
    redo = reconcile(half, wanted)
    # Then the rows are exactly the wanted ones
    assert apply(half, redo.puts, redo.deletes) == {k: v for k, v in wanted.items() if v}


@given(
    groups=st.lists(st.text(max_size=8), max_size=20),
    raw=st.lists(st.binary(max_size=6), max_size=10),
    buckets=st.integers(1, 16),
)
def test_every_summary_row_of_the_day_has_exactly_one_owner(
    groups: list[str], raw: list[bytes], buckets: int
) -> None:
    job = get_job("merchant_daily")
    owners = [owned_by(job.bucket, PREFIX, b, buckets) for b in range(buckets)]
    for key in [summary_key(DAY, g) for g in groups] + [PREFIX + r for r in raw]:
        assert sum(owns(key) for owns in owners) == 1


def test_ownership_follows_the_jobs_bucket_of_the_group() -> None:
    job = get_job("merchant_daily")
    for group in ("m000001", "m000002", "~invalid"):
        bucket = job.bucket(group, 8)
        assert owned_by(job.bucket, PREFIX, bucket, 8)(summary_key(DAY, group))
    # A group that is not UTF-8 is owned by the CRC32 of its bytes
    assert owned_by(job.bucket, PREFIX, zlib.crc32(b"\xff") % 8, 8)(PREFIX + b"\xff")
