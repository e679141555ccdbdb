"""The embedded store keeps HBase's scan semantics, and several processes can share it."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightfold.common.errors import ServiceUnavailable
from nightfold.common.keys import KeyRange, prefix_range
from nightfold.common.store import Row, open_store
from nightfold.common.store.local import LocalStore

ALL = KeyRange(b"", b"")
KEYS = [b"", b"\x00", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\x7f", b"\x80", b"\xff", b"\xff\xff"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "store.sqlite")
    s.ensure_table("t", ["o", "p"])
    yield s
    s.close()


def keys(rows: Iterable[Row]) -> list[bytes]:
    return [key for key, _ in rows]


def test_scan_is_in_byte_order_including_high_bytes(store: LocalStore) -> None:
    # Given keys written in reverse order, some with \x00 and \xff bytes
    real = [k for k in KEYS if k]
    store.put_many("t", [(k, {b"o:v": k}) for k in reversed(real)])
    # Then a full scan returns them in unsigned byte order, cells intact
    rows = list(store.scan("t", ALL))
    assert keys(rows) == sorted(real)
    assert all(cells == {b"o:v": key} for key, cells in rows)


@pytest.mark.parametrize(
    ("key_range", "expected"),
    [
        (KeyRange(b"a", b"b"), [b"a", b"a\x00", b"ab", b"a\xff"]),
        (KeyRange(b"a\x00", b"ab"), [b"a\x00"]),
        (KeyRange(b"ab", b"b"), [b"ab", b"a\xff"]),
        (KeyRange(b"\x80", b""), [b"\x80", b"\xff", b"\xff\xff"]),
        (KeyRange(b"\xff", b""), [b"\xff", b"\xff\xff"]),
        (KeyRange(b"", b"a"), [b"\x00"]),
        (prefix_range(b"a"), [b"a", b"a\x00", b"ab", b"a\xff"]),
        (prefix_range(b"\xff"), [b"\xff", b"\xff\xff"]),
        (KeyRange(b"c", b"d"), []),
    ],
)
def test_range_is_half_open_and_empty_end_is_unbounded(
    store: LocalStore, key_range: KeyRange, expected: list[bytes]
) -> None:
    store.put_many("t", [(k, {b"o:v": b"1"}) for k in KEYS if k])
    assert keys(store.scan("t", key_range)) == expected


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 1000])
def test_batch_size_does_not_change_the_result(store: LocalStore, batch_size: int) -> None:
    rows = [(b"k%03d" % i, {b"o:a": b"%d" % i, b"p:b": b"x"}) for i in range(25)]
    store.put_many("t", rows, batch_size=4)
    assert list(store.scan("t", ALL, batch_size=batch_size)) == rows


def test_columns_filter_by_qualifier_and_family(store: LocalStore) -> None:
    store.put_many(
        "t",
        [
            (b"r1", {b"o:a": b"1", b"o:b": b"2", b"p:a": b"3"}),
            (b"r2", {b"p:z": b"4", b"o:": b"empty qualifier"}),
            (b"r3", {b"o:ab": b"5"}),
        ],
    )
    by_family = [
        (b"r1", {b"o:a": b"1", b"o:b": b"2"}),
        (b"r2", {b"o:": b"empty qualifier"}),
        (b"r3", {b"o:ab": b"5"}),
    ]
    assert list(store.scan("t", ALL, columns=[b"o:a"])) == [(b"r1", {b"o:a": b"1"})]
    assert list(store.scan("t", ALL, columns=[b"o"])) == by_family
    # HBase 2 reads "o:" as the column with an empty qualifier, not as the family.
    assert list(store.scan("t", ALL, columns=[b"o:"])) == [(b"r2", {b"o:": b"empty qualifier"})]
    assert list(store.scan("t", ALL, columns=[b"o:b", b"p"])) == [
        (b"r1", {b"o:b": b"2", b"p:a": b"3"}),
        (b"r2", {b"p:z": b"4"}),
    ]
    # Rows without any selected cell are not returned at all.
    assert list(store.scan("t", ALL, columns=[b"o:zz"])) == []
    # An empty selection means every column.
    assert list(store.scan("t", ALL, columns=[])) == list(store.scan("t", ALL))
    # Overlaps resolve in order, as HBase builds its Scan: a column named after its
    # family narrows the family to that column; a family named later widens it again.
    assert list(store.scan("t", ALL, columns=[b"o", b"o:a"])) == [(b"r1", {b"o:a": b"1"})]
    assert list(store.scan("t", ALL, columns=[b"o:a", b"o"])) == by_family


def test_cells_of_a_row_come_back_sorted(store: LocalStore) -> None:
    store.put_many("t", [(b"r", {b"p:z": b"1", b"o:b": b"2", b"o:a": b"3"})])
    ((_, cells),) = store.scan("t", ALL)
    assert list(cells) == [b"o:a", b"o:b", b"p:z"]


def test_keys_only(store: LocalStore) -> None:
    store.put_many("t", [(b"x%d" % i, {b"o:a": b"v" * 100, b"p:b": b"w"}) for i in range(10)])
    rows = list(store.scan("t", KeyRange(b"x3", b"x6"), keys_only=True, batch_size=2))
    assert rows == [(b"x3", {}), (b"x4", {}), (b"x5", {})]


def test_put_is_idempotent_and_merges_cells(store: LocalStore) -> None:
    # Given a row written twice with the same cells, then extended
    rows = [(b"r", {b"o:a": b"1", b"o:b": b"2"})]
    assert store.put_many("t", rows) == 1
    assert store.put_many("t", rows) == 1
    first = list(store.scan("t", ALL))
    store.put_many("t", [(b"r", {b"o:b": b"3", b"p:c": b"4"})])
    # Then the repeat changed nothing, and a later put overwrites and adds cells only
    assert first == rows
    assert list(store.scan("t", ALL)) == [(b"r", {b"o:a": b"1", b"o:b": b"3", b"p:c": b"4"})]


def test_put_many_counts_rows_across_batches(store: LocalStore) -> None:
    rows = ((b"k%04d" % i, {b"o:a": b"1"}) for i in range(1001))
    assert store.put_many("t", rows, batch_size=100) == 1001
    assert sum(1 for _ in store.scan("t", ALL)) == 1001


def test_delete_range(store: LocalStore) -> None:
    store.put_many("t", [(k, {b"o:v": b"1", b"p:w": b"2"}) for k in KEYS if k])
    assert store.delete_range("t", prefix_range(b"a")) == 4
    assert store.delete_range("t", KeyRange(b"\xff", b"")) == 2
    assert keys(store.scan("t", ALL)) == [b"\x00", b"b", b"\x7f", b"\x80"]


def test_tables_are_separate_and_drop_removes_one(store: LocalStore) -> None:
    store.ensure_table("u", ["o"])
    store.ensure_table("u", ["o"])  # idempotent
    store.put_many("t", [(b"k", {b"o:a": b"t"})])
    store.put_many("u", [(b"k", {b"o:a": b"u"})])
    assert list(store.scan("u", ALL)) == [(b"k", {b"o:a": b"u"})]
    store.drop_table("u")
    store.drop_table("u")  # dropping a missing table is a no-op
    assert list(store.scan("t", ALL)) == [(b"k", {b"o:a": b"t"})]
    store.ensure_table("u", ["o"])
    assert list(store.scan("u", ALL)) == []


def test_missing_table_and_family_fail_as_in_hbase(store: LocalStore) -> None:
    with pytest.raises(ServiceUnavailable, match="table 'nope' does not exist"):
        list(store.scan("nope", ALL))
    with pytest.raises(ServiceUnavailable, match="no such column family"):
        store.put_many("t", [(b"k", {b"q:a": b"1"})])
    # The failed batch was rolled back as a whole.
    assert list(store.scan("t", ALL)) == []


def test_region_starts_is_one_region(store: LocalStore) -> None:
    store.put_many("t", [(b"k%d" % i, {b"o:a": b"1"}) for i in range(100)])
    assert store.region_starts("t") == []


def test_data_survives_reopening(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/s.sqlite"
    first = open_store(url)
    first.ensure_table("t", ["o"])
    first.put_many("t", [(b"k", {b"o:a": b"1"})])
    first.close()
    second = open_store(url)
    assert list(second.scan("t", ALL)) == [(b"k", {b"o:a": b"1"})]
    second.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    written=st.sets(st.binary(min_size=1, max_size=4), max_size=40),
    start=st.binary(max_size=3),
    end=st.binary(max_size=3),
    batch_size=st.integers(1, 5),
)
def test_scan_matches_a_sorted_filter(
    store: LocalStore, written: set[bytes], start: bytes, end: bytes, batch_size: int
) -> None:
    # Given any set of keys and any valid range
    if end and end <= start:
        start, end = end, start
        if start == end:
            end = b""
    key_range = KeyRange(start, end)
    store.drop_table("t")
    store.ensure_table("t", ["o"])
    store.put_many("t", [(k, {b"o:v": k}) for k in written], batch_size=7)
    # Then a scan is exactly the sorted keys inside the range
    expected = sorted(k for k in written if k in key_range)
    assert keys(store.scan("t", key_range, batch_size=batch_size)) == expected


def _write_rows(path: str, writer: int, rows: int, shared: int) -> int:
    """Child process: its own store, its own rows, plus rows every writer writes alike."""
    store = open_store(f"local://{path}")
    try:
        store.ensure_table("t", ["o"])
        total = 0
        for start in range(0, rows, 50):  # many small transactions to interleave
            batch = [
                (b"w%d-%05d" % (writer, i), {b"o:w": b"%d" % writer})
                for i in range(start, start + 50)
            ]
            total += store.put_many("t", batch)
            total += store.put_many(
                "t", [(b"shared-%03d" % (start // 50 % shared), {b"o:v": b"same"})]
            )
            sum(1 for _ in store.scan("t", prefix_range(b"shared-"), batch_size=3))
        return total
    finally:
        store.close()


def test_processes_write_concurrently(tmp_path: Path) -> None:
    # Given three worker processes writing to one file at the same time
    path = str(tmp_path / "shared.sqlite")
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(_write_rows, [(path, w, 1000, 10) for w in range(3)])
    # Then nothing failed with "database is locked" and every row is there once
    assert results == [1020, 1020, 1020]
    store = LocalStore(path)
    try:
        found = keys(store.scan("t", ALL))
    finally:
        store.close()
    expected = [b"shared-%03d" % i for i in range(10)]
    expected += [b"w%d-%05d" % (w, i) for w in range(3) for i in range(1000)]
    assert found == sorted(expected)
