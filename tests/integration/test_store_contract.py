"""The store contract: the embedded store and the real HBase, under the same assertions.

Every test here runs once per backend (the ``store`` fixture): ``local`` is
:class:`LocalStore` on a fresh SQLite file, ``hbase`` is :class:`HBaseStore` on
the real HBase under a private table prefix (the ``hbase_url`` fixture: skipped
locally when HBase is absent, a failure under ``CI=true``). The embedded store
is only useful if it behaves like HBase, so what one backend does here the other
must do too; only what is inherently backend-specific (how an error names its
cause) is looked up per backend. Backend-specific behaviour lives in
``tests/unit/test_local_store.py`` and ``tests/integration/test_hbase_store.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from nightfold.common.errors import ServiceUnavailable, StoreRejected
from nightfold.common.keys import KeyRange, prefix_range
from nightfold.common.store import Row, Store, open_store
from nightfold.common.store.hbase import HBaseStore
from nightfold.common.store.local import LocalStore

ALL = KeyRange(b"", b"")
KEYS = [b"\x00", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\x7f", b"\x80", b"\xff", b"\xff\xff"]

# How each backend names a missing table and a missing column family in its errors.
MISSING_TABLE = {"local": "table 'nope' does not exist", "hbase": "TableNotFoundException"}
MISSING_FAMILY = {"local": "no such column family", "hbase": "NoSuchColumnFamilyException"}


@pytest.fixture(params=["local", pytest.param("hbase", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store with an empty table ``t`` (families ``o`` and ``p``), on each backend."""
    s: Store
    if request.param == "local":
        s = LocalStore(tmp_path / "store.sqlite")
    else:
        s = open_store(request.getfixturevalue("hbase_url"))
        assert isinstance(s, HBaseStore)
    s.ensure_table("t", ["o", "p"])
    yield s
    s.close()


def backend(store: Store) -> tuple[str, str]:
    """``(service, address)``: the store's errors start ``"<service> unavailable: <address>: "``."""
    if isinstance(store, HBaseStore):
        return "hbase", f"{store.host}:{store.port}"
    assert isinstance(store, LocalStore)
    return "local", str(store.path)


def keys(rows: Iterable[Row]) -> list[bytes]:
    return [key for key, _ in rows]


def test_scan_is_in_byte_order_including_high_bytes(store: Store) -> None:
    # Given keys written in reverse order, some with \x00 and \xff bytes
    store.put_many("t", [(k, {b"o:v": k}) for k in reversed(KEYS)])
    # Then a full scan returns them in unsigned byte order, cells intact
    rows = list(store.scan("t", ALL))
    assert keys(rows) == sorted(KEYS)
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
    store: Store, key_range: KeyRange, expected: list[bytes]
) -> None:
    store.put_many("t", [(k, {b"o:v": b"1"}) for k in KEYS])
    assert keys(store.scan("t", key_range)) == expected


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 1000])
def test_batch_size_does_not_change_the_result(store: Store, batch_size: int) -> None:
    rows = [(b"k%03d" % i, {b"o:a": b"%d" % i, b"p:b": b"x"}) for i in range(25)]
    store.put_many("t", rows, batch_size=4)
    assert list(store.scan("t", ALL, batch_size=batch_size)) == rows


def test_columns_filter_by_qualifier_and_family(store: Store) -> None:
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


def test_cells_of_a_row_come_back_sorted(store: Store) -> None:
    store.put_many("t", [(b"r", {b"p:z": b"1", b"o:b": b"2", b"o:a": b"3"})])
    ((_, cells),) = store.scan("t", ALL)
    assert list(cells) == [b"o:a", b"o:b", b"p:z"]


def test_keys_only(store: Store) -> None:
    store.put_many("t", [(b"x%d" % i, {b"o:a": b"v" * 100, b"p:b": b"w"}) for i in range(10)])
    rows = list(store.scan("t", KeyRange(b"x3", b"x6"), keys_only=True, batch_size=2))
    assert rows == [(b"x3", {}), (b"x4", {}), (b"x5", {})]


def test_put_is_idempotent_and_merges_cells(store: Store) -> None:
    # Given a row written twice with the same cells, then extended
    rows = [(b"r", {b"o:a": b"1", b"o:b": b"2"})]
    assert store.put_many("t", rows) == 1
    assert store.put_many("t", rows) == 1
    first = list(store.scan("t", ALL))
    store.put_many("t", [(b"r", {b"o:b": b"3", b"p:c": b"4"})])
    # Then the repeat changed nothing, and a later put overwrites and adds cells only
    assert first == rows
    assert list(store.scan("t", ALL)) == [(b"r", {b"o:a": b"1", b"o:b": b"3", b"p:c": b"4"})]


def test_put_many_counts_rows_across_batches(store: Store) -> None:
    rows = ((b"k%04d" % i, {b"o:a": b"1"}) for i in range(1001))
    assert store.put_many("t", rows, batch_size=100) == 1001
    assert sum(1 for _ in store.scan("t", ALL)) == 1001


def test_delete_range(store: Store) -> None:
    store.put_many("t", [(k, {b"o:v": b"1", b"p:w": b"2"}) for k in KEYS])
    assert store.delete_range("t", prefix_range(b"a")) == 4
    assert store.delete_range("t", KeyRange(b"\xff", b"")) == 2
    assert store.delete_range("t", KeyRange(b"\xff", b"")) == 0
    assert keys(store.scan("t", ALL)) == [b"\x00", b"b", b"\x7f", b"\x80"]


def test_delete_range_over_many_batches(store: Store) -> None:
    store.put_many("t", [(b"k%05d" % i, {b"o:v": b"1"}) for i in range(2500)])
    assert store.delete_range("t", KeyRange(b"k00100", b"k02400")) == 2300
    assert sum(1 for _ in store.scan("t", ALL)) == 200


def test_delete_range_exactly_at_batch_boundaries(store: Store) -> None:
    # 2000 rows: exactly two of HBaseStore's delete batches
    store.put_many("t", [(b"k%05d" % i, {b"o:v": b"1"}) for i in range(2000)])
    assert store.delete_range("t", KeyRange(b"k00000", b"k01999\x00")) == 2000
    assert list(store.scan("t", ALL)) == []


def test_delete_cells_removes_whole_rows_and_single_columns(store: Store) -> None:
    # Given rows with cells in two families
    store.put_many(
        "t", [(k, {b"o:a": b"1", b"o:b": b"2", b"p:c": b"3"}) for k in (b"r1", b"r2", b"r3")]
    )
    # When one row is deleted whole, columns of another go, a missing row and a
    # missing column are "deleted" too, and an empty column list is given
    sent = store.delete_cells(
        "t",
        [
            (b"r1", None),
            (b"r2", [b"o:b", b"p:c", b"o:zz"]),
            (b"nope", None),
            (b"nope", [b"o:a"]),
            (b"r3", []),
        ],
    )
    # Then exactly those cells are gone, and the rest is untouched
    assert sent == 5
    assert list(store.scan("t", ALL)) == [
        (b"r2", {b"o:a": b"1"}),
        (b"r3", {b"o:a": b"1", b"o:b": b"2", b"p:c": b"3"}),
    ]
    # And deleting again is a no-op; a row whose last column goes is gone
    store.delete_cells("t", [(b"r1", None), (b"r2", [b"o:a"])])
    assert keys(store.scan("t", ALL)) == [b"r3"]


def test_delete_cells_then_put_again(store: Store) -> None:
    # A deleted row or column can be written again (HBase: a later put is not masked)
    store.put_many("t", [(b"r", {b"o:a": b"1", b"o:b": b"2"})])
    store.delete_cells("t", [(b"r", [b"o:b"])])
    store.delete_cells("t", [(b"s", None)])
    store.put_many("t", [(b"r", {b"o:b": b"3"})])
    assert list(store.scan("t", ALL)) == [(b"r", {b"o:a": b"1", b"o:b": b"3"})]


def test_delete_cells_over_many_batches(store: Store) -> None:
    store.put_many("t", [(b"k%04d" % i, {b"o:v": b"1", b"p:w": b"2"}) for i in range(1200)])
    deletes = [(b"k%04d" % i, None if i % 2 else [b"p:w"]) for i in range(1200)]
    assert store.delete_cells("t", deletes, batch_size=500) == 1200
    rows = list(store.scan("t", ALL))
    assert rows == [(b"k%04d" % i, {b"o:v": b"1"}) for i in range(0, 1200, 2)]


def test_delete_cells_errors_are_one_line(store: Store) -> None:
    # a delete the store answers "no" to is a deterministic StoreRejected, like a put
    with pytest.raises(StoreRejected) as missing_table:
        store.delete_cells("nope", [(b"k", None)])
    store.put_many("t", [(b"k", {b"o:a": b"1"})])
    with pytest.raises(StoreRejected) as missing_family:
        store.delete_cells("t", [(b"k", [b"q:a"])])
    service, address = backend(store)
    assert MISSING_TABLE[service] in str(missing_table.value)
    assert MISSING_FAMILY[service] in str(missing_family.value)
    for error in (missing_table.value, missing_family.value):
        assert error.service == service
        assert not isinstance(error, ServiceUnavailable)
        assert str(error).startswith(f"{service} rejected: {address}: ")
        assert "\n" not in str(error)
    assert list(store.scan("t", ALL)) == [(b"k", {b"o:a": b"1"})]


def test_tables_are_separate_and_drop_removes_one(store: Store) -> None:
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


def test_missing_table_and_family_are_one_line_deterministic_errors(store: Store) -> None:
    # the store answered "no": StoreRejected (counted by a worker), not an outage
    with pytest.raises(StoreRejected) as missing_table:
        list(store.scan("nope", ALL))
    with pytest.raises(StoreRejected) as missing_family:
        store.put_many("t", [(b"k", {b"q:a": b"1"})])
    service, address = backend(store)
    assert MISSING_TABLE[service] in str(missing_table.value)
    assert MISSING_FAMILY[service] in str(missing_family.value)
    for error in (missing_table.value, missing_family.value):
        assert error.service == service
        assert not isinstance(error, ServiceUnavailable)
        assert str(error).startswith(f"{service} rejected: {address}: ")
        assert "\n" not in str(error)
        assert "org.apache" not in str(error)
    # Nothing of the failed write was stored.
    assert list(store.scan("t", ALL)) == []


def test_region_starts_of_a_fresh_table(store: Store) -> None:
    store.put_many("t", [(b"k%d" % i, {b"o:a": b"1"}) for i in range(100)])
    assert store.region_starts("t") == []
    assert store.region_starts("nope") == []


@pytest.mark.parametrize(
    ("key_range", "limit"),
    [
        (ALL, 1),
        (ALL, 3),
        (ALL, 100),
        (KeyRange(b"a", b"b"), 2),
        (KeyRange(b"a", b"b"), 10),
        (KeyRange(b"a\x00", b"ab"), 5),
        (KeyRange(b"\x80", b""), 2),
        (KeyRange(b"\xff", b""), 5),
        (KeyRange(b"", b"a"), 3),
        (KeyRange(b"c", b"d"), 4),
        (prefix_range(b"a"), 3),
    ],
)
def test_probe_keys_are_the_first_or_last_keys_of_the_range(
    store: Store, key_range: KeyRange, limit: int
) -> None:
    # Given keys with \x00 and \xff bytes, in two families
    store.put_many("t", [(k, {b"o:v": b"1", b"p:w": b"2"}) for k in KEYS])
    inside = keys(store.scan("t", key_range))
    # Then a probe reads at most `limit` keys: the range's first ones, or its last ones
    assert store.probe_keys("t", key_range, limit) == inside[:limit]
    assert store.probe_keys("t", key_range, limit, reverse=True) == inside[::-1][:limit]


def test_probe_keys_of_a_missing_table_are_refused(store: Store) -> None:
    with pytest.raises(StoreRejected):
        store.probe_keys("nope", ALL, 1)
    with pytest.raises(ValueError):
        store.probe_keys("t", ALL, 0)
