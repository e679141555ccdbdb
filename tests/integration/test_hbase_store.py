"""HBaseStore against the real HBase (Thrift1 gateway): what only it has to do.

Its semantics, shared with the embedded store, are tested on both backends in
``test_store_contract.py``; here: table prefixes, concurrent table creation,
reconnecting and resuming scans after a dropped connection, a seeded day.

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

from nightfold.common.errors import ServiceUnavailable, StoreRejected
from nightfold.common.keys import KeyRange, day_ranges
from nightfold.common.store import Row, open_store
from nightfold.common.store.hbase import HBaseStore
from nightfold.ops.seeding import generate_rows, seed_day

pytestmark = pytest.mark.integration

ALL = KeyRange(b"", b"")


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


def test_table_prefixes_isolate_tests(store: HBaseStore, hbase_url: str) -> None:
    store.put_many("t", [(b"k", {b"o:a": b"mine"})])
    other = open_store(re.sub(r"table_prefix=\w+", "table_prefix=tnobody", hbase_url))
    try:
        with pytest.raises(StoreRejected, match="TableNotFound"):
            list(other.scan("t", ALL))
    finally:
        other.close()


def test_hbase_refusing_a_write_is_a_deterministic_store_rejection(store: HBaseStore) -> None:
    # Given a cell above hbase.client.keyvalue.maxsize (10 MB by default)
    too_big = b"x" * (11 << 20)
    # Then HBase's answer is a StoreRejected with its reason (counted by a worker),
    # not a ServiceUnavailable that a worker rides out forever (issue 13)
    with pytest.raises(StoreRejected, match="KeyValue size too large") as info:
        store.put_many("t", [(b"big", {b"p:a": too_big})])
    assert not isinstance(info.value, ServiceUnavailable)
    with pytest.raises(StoreRejected, match="NoSuchColumnFamilyException"):
        store.put_many("t", [(b"k", {b"zz:a": b"1"})])
    # And the connection stays usable: nothing was torn down
    store.put_many("t", [(b"k", {b"o:a": b"1"})])
    assert list(store.scan("t", ALL)) == [(b"k", {b"o:a": b"1"})]


def test_big_rows_are_written_in_bounded_calls(store: HBaseStore) -> None:
    # Given rows of 12 MiB each in 1 MiB cells: too much for one sensible Thrift call
    rows = [
        (b"r%d" % r, {b"p:%02d" % i: bytes([65 + r]) * (1 << 20) for i in range(12)})
        for r in range(2)
    ]
    # Then they are written whole, in calls of a few MiB, and read back exactly
    assert store.put_many("t", rows) == 2
    assert list(store.scan("t", ALL, batch_size=1)) == rows


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
