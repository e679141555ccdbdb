"""The HBase seam's error classification and write batching, on real exception
objects of happybase's Thrift module (no HBase needed: both are pure functions).

Transient conditions are ridden out (ServiceUnavailable: the chunk is released
uncounted); everything else HBase answers is deterministic (StoreRejected: the
attempt counts, so the chunk dies instead of looping, issue 13)."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TTransportException

from nightfold.common.db.runs import RunParams
from nightfold.common.errors import (
    ConfigError,
    NightfoldError,
    ServiceUnavailable,
    StoreRejected,
)
from nightfold.common.store.hbase import TRANSIENT_HBASE_ERRORS, put_batches, store_error

thrift = importlib.import_module("Hbase_thrift")
ADDR = "127.0.0.1:9090"


def trace(first: str) -> bytes:
    """What HBase's Thrift1 gateway sends: a Java stack trace as bytes."""
    return (
        first.encode()
        + b"\n\tat org.apache.hadoop.hbase.client.HTable.put(HTable.java:586)"
        + b"\n\tat org.apache.hadoop.hbase.thrift.ThriftHBaseServiceHandler.mutateRows(X.java:1)"
    )


DETERMINISTIC = [
    thrift.IllegalArgument(
        message=trace("java.lang.IllegalArgumentException: KeyValue size too large")
    ),
    thrift.IOError(message=trace("org.apache.hadoop.hbase.TableNotFoundException: t_raw")),
    thrift.IOError(
        message=trace(
            "org.apache.hadoop.hbase.client.RetriesExhaustedWithDetailsException: Failed 1 action:"
            " org.apache.hadoop.hbase.regionserver.NoSuchColumnFamilyException: Column family zz"
            " does not exist in region t,,1.abc. in table 't'"
        )
    ),
    thrift.IOError(message=trace("org.apache.hadoop.hbase.security.AccessDeniedException: no")),
    TApplicationException(TApplicationException.INTERNAL_ERROR, "NullPointerException"),
    TApplicationException(
        TApplicationException.INTERNAL_ERROR, "Internal error processing mutateRows"
    ),
    TApplicationException(TApplicationException.UNKNOWN_METHOD, "Invalid method name"),
]


@pytest.mark.parametrize("exc", DETERMINISTIC, ids=lambda e: type(e).__name__)
def test_what_hbase_answers_is_deterministic_and_counted(exc: Exception) -> None:
    error = store_error(exc, ADDR)
    assert type(error) is StoreRejected
    assert isinstance(error, NightfoldError) and not isinstance(error, ServiceUnavailable)
    assert str(error).startswith(f"hbase rejected: {ADDR}: ")
    assert "\n" not in str(error) and "org.apache" not in str(error)


def test_the_reason_is_hbase_first_line() -> None:
    error = store_error(DETERMINISTIC[0], ADDR)
    assert (
        str(error) == f"hbase rejected: {ADDR}: IllegalArgumentException: KeyValue size too large"
    )


@pytest.mark.parametrize("name", TRANSIENT_HBASE_ERRORS)
def test_answers_naming_a_transient_condition_are_ridden_out(name: str) -> None:
    direct = thrift.IOError(message=trace(f"org.apache.hadoop.hbase.{name}: region r"))
    # HBase's client wraps what it gave up on; the cause names the condition
    wrapped = thrift.IOError(
        message=trace(
            "org.apache.hadoop.hbase.client.RetriesExhaustedException: Failed after attempts=16"
        )
        + f"\nCaused by: java.net.{name}: localhost/127.0.0.1:16020".encode()
    )
    for exc in (direct, wrapped):
        assert type(store_error(exc, ADDR)) is ServiceUnavailable


def test_a_name_that_only_contains_a_transient_one_is_not_transient() -> None:
    exc = thrift.IOError(message=trace("org.example.NotServingRegionExceptionally: x"))
    assert type(store_error(exc, ADDR)) is StoreRejected


@pytest.mark.parametrize(
    "exc",
    [
        TTransportException(TTransportException.END_OF_FILE, "TSocket read 0 bytes"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        BrokenPipeError(32, "Broken pipe"),
        EOFError(),
        TApplicationException(TApplicationException.BAD_SEQUENCE_ID, "out of step"),
        TApplicationException(TApplicationException.MISSING_RESULT),
        # HBase 2.6's gateway while a region is in transition (its NullPointerException)
        TApplicationException(
            TApplicationException.INTERNAL_ERROR, "Internal error processing getTableRegions"
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_failures_stay_service_unavailable(exc: BaseException) -> None:
    assert type(store_error(exc, ADDR)) is ServiceUnavailable


rows_strategy = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=8),
        st.dictionaries(st.binary(min_size=1, max_size=8), st.binary(max_size=64), max_size=6),
    ),
    max_size=20,
)


@given(rows_strategy, st.integers(1, 5), st.integers(1, 200))
def test_put_batches_keep_every_cell_once_within_both_bounds(
    rows: list[tuple[bytes, dict[bytes, bytes]]], max_rows: int, max_bytes: int
) -> None:
    batches = list(put_batches(iter(rows), max_rows, max_bytes))
    sent = [
        (key, col, val) for batch in batches for key, cells in batch for col, val in cells.items()
    ]
    assert sent == [(key, col, val) for key, cells in rows for col, val in cells.items()]
    for batch in batches:
        assert batch and len(batch) <= max_rows
        cells = [(k, c, v) for k, cols in batch for c, v in cols.items()]
        size = sum(len(k) + len(c) + len(v) for k, c, v in cells)
        assert size <= max_bytes or len(cells) == 1  # only a lone giant cell goes over


def test_put_batches_split_a_big_row_and_many_big_rows() -> None:
    mib = b"x" * (1 << 20)
    big_row = (b"k", {b"p:%d" % i: mib for i in range(10)})
    batches = list(put_batches(iter([big_row]), 1000, 4 << 20))
    assert [len(b[0][1]) for b in batches] == [3, 3, 3, 1]
    many = [(b"k%d" % i, {b"p:a": mib}) for i in range(10)]
    assert [len(b) for b in put_batches(iter(many), 1000, 4 << 20)] == [3, 3, 3, 1]


def test_max_cell_bytes_must_stay_below_hbase_limit() -> None:
    assert RunParams().max_cell_bytes == 1 << 20
    with pytest.raises(ConfigError, match="max_cell_bytes must be at most"):
        RunParams(max_cell_bytes=10 << 20)
    with pytest.raises(ConfigError, match="max_cell_bytes must be positive"):
        RunParams(max_cell_bytes=0)
