"""The embedded store on its own: its file persists, several processes can share it, and
its scans match a sorted filter for any keys (a property test; on HBase each example
would need a table dropped and created, about a second, so it runs here only).

What it shares with HBase is tested on both backends, under the same assertions, in
``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightfold.common.keys import KeyRange, prefix_range
from nightfold.common.store import Row, open_store
from nightfold.common.store.local import LocalStore

ALL = KeyRange(b"", b"")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "store.sqlite")  # each example below makes its own table
    yield s
    s.close()


def keys(rows: Iterable[Row]) -> list[bytes]:
    return [key for key, _ in rows]


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


def test_a_presplit_table_reports_its_regions_until_dropped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite")
    # Given a table created with split keys (given unsorted)
    assert store.create_presplit("t", ["o"], [b"m", b"c", b"x"])
    # Then its regions are reported sorted, a second create changes nothing
    assert store.region_starts("t") == [b"c", b"m", b"x"]
    assert not store.create_presplit("t", ["o"], [b"z"])
    assert store.region_starts("t") == [b"c", b"m", b"x"]
    # And a plain table, a missing one and a dropped one have one region
    store.ensure_table("plain", ["o"])
    assert store.region_starts("plain") == []
    assert store.region_starts("nope") == []
    store.drop_table("t")
    assert store.region_starts("t") == []
    assert store.create_presplit("t", ["o"], [])
    assert store.region_starts("t") == []
    with pytest.raises(ValueError):
        store.create_presplit("u", ["o"], [b""])
    store.close()
