"""HBaseStore against the real HBase (Thrift1 gateway): the same semantics as the local store.

Each test works under its own table prefix (the ``hbase_url`` fixture), so tests
never see each other's tables. Connection failures are real ones: we cut our own
TCP connection, we never imitate HBase.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
from collections.abc import Iterable, Iterator

import pytest

from nightfold.common.errors import ServiceUnavailable
from nightfold.common.keys import KeyRange, day_ranges, prefix_range
from nightfold.common.seeding import generate_rows, seed_day
from nightfold.common.store import Row, open_store
from nightfold.common.store.hbase import HBaseStore

pytestmark = pytest.mark.integration

ALL = KeyRange(b"", b"")
KEYS = [b"\x00", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\x7f", b"\x80", b"\xff", b"\xff\xff"]


@pytest.fixture
def store(hbase_url: str) -> Iterator[HBaseStore]:
    s = open_store(hbase_url)
    assert isinstance(s, HBaseStore)
    s.ensure_table("t", ["o", "p"])
    yield s
    s.close()


def keys(rows: Iterable[Row]) -> list[bytes]:
    return [key for key, _ in rows]


def cut_connection(store: HBaseStore) -> None:
    """Kill the store's TCP connection under it, as a dropped network or gateway would."""
    raw = store.connection.transport.sock  # thriftpy2's buffered transport -> socket.socket
    raw.shutdown(socket.SHUT_RDWR)


def test_scan_is_in_byte_order_including_high_bytes(store: HBaseStore) -> None:
    store.put_many("t", [(k, {b"o:v": k}) for k in reversed(KEYS)])
    rows = list(store.scan("t", ALL))
    assert keys(rows) == sorted(KEYS)
    assert all(dict(cells) == {b"o:v": key} for key, cells in rows)


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
    store: HBaseStore, key_range: KeyRange, expected: list[bytes]
) -> None:
    store.put_many("t", [(k, {b"o:v": b"1"}) for k in KEYS])
    assert keys(store.scan("t", key_range)) == expected


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_batch_size_does_not_change_the_result(store: HBaseStore, batch_size: int) -> None:
    rows = [(b"k%03d" % i, {b"o:a": b"%d" % i, b"p:b": b"x"}) for i in range(25)]
    store.put_many("t", rows, batch_size=4)
    assert list(store.scan("t", ALL, batch_size=batch_size)) == rows


def test_columns_filter_by_qualifier_and_family(store: HBaseStore) -> None:
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


def test_cells_of_a_row_come_back_sorted(store: HBaseStore) -> None:
    store.put_many("t", [(b"r", {b"p:z": b"1", b"o:b": b"2", b"o:a": b"3"})])
    ((_, cells),) = store.scan("t", ALL)
    assert list(cells) == [b"o:a", b"o:b", b"p:z"]


def test_keys_only(store: HBaseStore) -> None:
    store.put_many("t", [(b"x%d" % i, {b"o:a": b"v" * 100, b"p:b": b"w"}) for i in range(10)])
    rows = list(store.scan("t", KeyRange(b"x3", b"x6"), keys_only=True, batch_size=2))
    assert rows == [(b"x3", {}), (b"x4", {}), (b"x5", {})]


def test_put_is_idempotent_and_merges_cells(store: HBaseStore) -> None:
    rows = [(b"r", {b"o:a": b"1", b"o:b": b"2"})]
    assert store.put_many("t", rows) == 1
    assert store.put_many("t", rows) == 1
    first = list(store.scan("t", ALL))
    store.put_many("t", [(b"r", {b"o:b": b"3", b"p:c": b"4"})])
    assert first == rows
    assert list(store.scan("t", ALL)) == [(b"r", {b"o:a": b"1", b"o:b": b"3", b"p:c": b"4"})]


def test_put_many_counts_rows_across_batches(store: HBaseStore) -> None:
    rows = ((b"k%04d" % i, {b"o:a": b"1"}) for i in range(1001))
    assert store.put_many("t", rows, batch_size=100) == 1001
    assert sum(1 for _ in store.scan("t", ALL)) == 1001


def test_delete_range(store: HBaseStore) -> None:
    store.put_many("t", [(k, {b"o:v": b"1", b"p:w": b"2"}) for k in KEYS])
    assert store.delete_range("t", prefix_range(b"a")) == 4
    assert store.delete_range("t", KeyRange(b"\xff", b"")) == 2
    assert store.delete_range("t", KeyRange(b"\xff", b"")) == 0
    assert keys(store.scan("t", ALL)) == [b"\x00", b"b", b"\x7f", b"\x80"]


def test_delete_range_over_many_batches(store: HBaseStore) -> None:
    store.put_many("t", [(b"k%05d" % i, {b"o:v": b"1"}) for i in range(2500)])
    assert store.delete_range("t", KeyRange(b"k00100", b"k02400")) == 2300
    assert sum(1 for _ in store.scan("t", ALL)) == 200


def test_tables_are_separate_and_drop_removes_one(store: HBaseStore) -> None:
    store.ensure_table("u", ["o"])
    store.ensure_table("u", ["o"])
    store.put_many("t", [(b"k", {b"o:a": b"t"})])
    store.put_many("u", [(b"k", {b"o:a": b"u"})])
    assert list(store.scan("u", ALL)) == [(b"k", {b"o:a": b"u"})]
    store.drop_table("u")
    store.drop_table("u")
    assert list(store.scan("t", ALL)) == [(b"k", {b"o:a": b"t"})]
    store.ensure_table("u", ["o"])
    assert list(store.scan("u", ALL)) == []


def test_table_prefixes_isolate_tests(store: HBaseStore, hbase_url: str) -> None:
    store.put_many("t", [(b"k", {b"o:a": b"mine"})])
    other = open_store(re.sub(r"table_prefix=\w+", "table_prefix=tnobody", hbase_url))
    try:
        with pytest.raises(ServiceUnavailable, match="TableNotFound"):
            list(other.scan("t", ALL))
    finally:
        other.close()


def test_concurrent_ensure_table_tolerates_already_exists(hbase_url: str) -> None:
    # Given four stores (one per thread: stores are not thread-safe) creating one table
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        s = open_store(hbase_url)
        try:
            barrier.wait()
            s.ensure_table("race", ["o"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then all succeed and the table works
    assert errors == []
    s = open_store(hbase_url)
    s.put_many("race", [(b"k", {b"o:a": b"1"})])
    assert keys(s.scan("race", ALL)) == [b"k"]
    s.close()


def test_missing_table_and_family_are_one_line_errors(store: HBaseStore) -> None:
    with pytest.raises(ServiceUnavailable) as missing_table:
        list(store.scan("nope", ALL))
    with pytest.raises(ServiceUnavailable) as missing_family:
        store.put_many("t", [(b"k", {b"q:a": b"1"})])
    assert "TableNotFoundException" in str(missing_table.value)
    assert "NoSuchColumnFamilyException" in str(missing_family.value)
    for error in (missing_table.value, missing_family.value):
        assert error.service == "hbase"
        assert str(error).startswith(f"hbase unavailable: {store.host}:{store.port}: ")
        assert "\n" not in str(error)
        assert "org.apache" not in str(error)


def test_region_starts_of_a_fresh_table(store: HBaseStore) -> None:
    store.put_many("t", [(b"k%d" % i, {b"o:a": b"1"}) for i in range(100)])
    assert store.region_starts("t") == []
    assert store.region_starts("nope") == []


def test_reconnects_once_after_a_dropped_connection(
    store: HBaseStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a store whose TCP connection was cut
    store.put_many("t", [(b"a", {b"o:a": b"1"})])
    cut_connection(store)
    # When it is used again, for a write and a read
    store.put_many("t", [(b"b", {b"o:a": b"2"})])
    cut_connection(store)
    # Then it reconnected (each time) and both worked
    assert keys(store.scan("t", ALL)) == [b"a", b"b"]
    assert caplog.text.count("reconnecting once") == 2


def test_scan_resumes_after_a_dropped_connection(
    store: HBaseStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a scan that has yielded some rows
    rows = [(b"k%03d" % i, {b"o:a": b"%d" % i}) for i in range(50)]
    store.put_many("t", rows)
    scan = store.scan("t", ALL, batch_size=7)
    head = [next(scan) for _ in range(10)]
    # When the connection is cut mid-scan
    cut_connection(store)
    tail = list(scan)
    # Then the scan continues after the last row given out: no row lost or repeated
    assert head + tail == rows
    assert "reconnecting once" in caplog.text


def test_scan_survives_a_reconnect_made_by_another_call(
    store: HBaseStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a paused scan, and a write on the same store that had to reconnect
    rows = [(b"k%03d" % i, {b"o:a": b"%d" % i}) for i in range(30)]
    store.put_many("t", rows)
    scan = store.scan("t", ALL, batch_size=4)
    head = [next(scan) for _ in range(6)]
    cut_connection(store)
    store.put_many("t", [(b"zz", {b"o:a": b"late"})])
    # When the scan goes on (its scanner died with the old socket)
    tail = list(scan)
    # Then it reopened on the new connection right after the last row it gave out
    assert head + tail == [*rows, (b"zz", {b"o:a": b"late"})]
    assert "connection replaced; reopening scan" in caplog.text


def test_delete_range_exactly_at_batch_boundaries(store: HBaseStore) -> None:
    store.put_many("t", [(b"k%05d" % i, {b"o:v": b"1"}) for i in range(2000)])
    assert store.delete_range("t", KeyRange(b"k00000", b"k01999\x00")) == 2000
    assert list(store.scan("t", ALL)) == []


def test_closed_store_reconnects_on_use(store: HBaseStore) -> None:
    store.close()
    store.put_many("t", [(b"a", {b"o:a": b"1"})])
    assert keys(store.scan("t", ALL)) == [b"a"]


def test_seeded_day_round_trips(hbase_url: str) -> None:
    # Given a seeded day
    day = dt.date(2026, 11, 22)
    s = open_store(hbase_url)
    try:
        assert seed_day(s, day, 5000, salt_buckets=4, batch_size=500) == 5000
        # When it is scanned range by range
        scanned = [row for r in day_ranges(day, 4) for row in s.scan("nightfold_raw", r)]
    finally:
        s.close()
    # Then HBase returns exactly the generated rows, in key order, byte for byte
    expected = sorted(generate_rows(day, 5000, salt_buckets=4))
    assert [(k, dict(c)) for k, c in scanned] == [(k, dict(c)) for k, c in expected]
