"""The production store: HBase through happybase and the Thrift1 gateway.

One :class:`HBaseStore` owns one ``happybase.Connection`` (one TCP socket to the
Thrift server). Like the socket, a store is **not thread-safe**: give every
thread and every process its own store (``open_store`` is cheap).

Errors are mapped here, at the seam, so code above never sees thriftpy2 or
happybase types:

- transport failures (refused, reset, timed out, EOF because the gateway closed an
  idle socket, a desynchronised Thrift stream) are retried once on a fresh
  connection -- every store operation is idempotent -- and then raised as
  :class:`ServiceUnavailable` ``("hbase", "host:port: reason")``;
- errors HBase reports (``IOError`` such as TableNotFoundException,
  ``IllegalArgument`` such as "KeyValue size too large", ``TApplicationException``)
  are not retried here. HBase *answered*, so by default the answer is
  deterministic and raised as :class:`StoreRejected` with the first line of its
  message: a worker counts it as a failed attempt instead of releasing the chunk
  for another worker to hit the same wall (issue 13: 242 claim/release cycles,
  no attempt counted, a run stuck in ``mapping``). Only answers that name a
  transient HBase condition (:data:`TRANSIENT_HBASE_ERRORS`: a region moving or
  busy, a server starting, HBase's client giving up on a connection) are raised
  as :class:`ServiceUnavailable` and ridden out like an outage.

A scan interrupted by a transport error resumes right after the last row it
yielded, so a caller never sees a row twice.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import happybase
from thriftpy2.protocol.exc import TProtocolException
from thriftpy2.thrift import TApplicationException, TException
from thriftpy2.transport import TTransportException

from nightfold.common.errors import ServiceUnavailable, StoreRejected
from nightfold.common.keys import KeyRange
from nightfold.common.store.ahead import read_ahead
from nightfold.common.store.base import CellDelete, Columns, Row, in_batches

log = logging.getLogger(__name__)

# happybase compiles Hbase.thrift when imported, into the top-level module
# "Hbase_thrift"; its exception classes live there (looked up, so the import order
# is explicit and no stub is needed).
_hbase_thrift = importlib.import_module("Hbase_thrift")
AlreadyExists: type[Exception] = _hbase_thrift.AlreadyExists
IllegalArgument: type[Exception] = _hbase_thrift.IllegalArgument
HBaseIOError: type[Exception] = _hbase_thrift.IOError

T = TypeVar("T")

AHEAD_BATCHES = 2
"""Batches a read-ahead scan keeps ready: one being folded, one arriving."""

_JAVA_PACKAGE = re.compile(r"\b(?:[a-z][a-z0-9_]*\.)+(?=[A-Z]\w*(?:Exception|Error)\b)")
KEYS_ONLY_FILTER = "KeyOnlyFilter() AND FirstKeyOnlyFilter()"
RECONNECT_PAUSE_S = 0.2
DELETE_BATCH = 1000
PUT_BATCH_BYTES = 4 << 20
"""About how much cell data one ``mutateRows`` call carries (see :func:`put_batches`)."""

# Failures of the pipe, not of the request: a fresh connection may well succeed.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    TTransportException,
    TProtocolException,
    OSError,  # includes ConnectionError, socket.timeout (TimeoutError), BrokenPipeError
    EOFError,
)
# What a paused scan sees when its connection was closed under it: thriftpy2's
# TSocket asserts that its socket is still there.
_SCAN_BREAKS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, AssertionError)
# Answers from HBase itself: retrying the same request gives the same answer.
HBASE_ERRORS: tuple[type[BaseException], ...] = (HBaseIOError, IllegalArgument, TException)

TRANSIENT_HBASE_ERRORS: tuple[str, ...] = (
    # a region is moving, opening, closing, splitting or not assigned yet
    "NotServingRegionException",
    "RegionOpeningException",
    "RegionMovedException",
    "NoServerForRegionException",
    "RegionOfflineException",
    # a server is overloaded, starting or stopping
    "RegionTooBusyException",
    "CallQueueTooBigException",
    "ServerNotRunningYetException",
    "RegionServerStoppedException",
    "PleaseHoldException",
    "MasterNotRunningException",
    # HBase's own client lost its connection to a region server or the master
    # (these appear as the cause inside RetriesExhausted[WithDetails]Exception)
    "ConnectException",
    "ConnectionClosingException",
    "ConnectionClosedException",
    "CallTimeoutException",
    "SocketTimeoutException",
    "FailedServerException",
)
"""Java exception names which, anywhere in an answer of HBase, make it transient.

Everything else HBase answers is deterministic (:class:`StoreRejected`): e.g.
TableNotFoundException, NoSuchColumnFamilyException, "KeyValue size too large",
AccessDeniedException. Note that a *disabled* table is not deterministic for
HBase: its client retries NotServingRegionException for minutes, and the answer
that finally arrives names that transient condition.
"""
_TRANSIENT = re.compile(r"\b(?:" + "|".join(TRANSIENT_HBASE_ERRORS) + r")\b")
# TApplicationException types that mean our Thrift stream is out of step, not a
# refusal of the request: a fresh connection fixes them.
_DESYNC = frozenset(
    {
        TApplicationException.BAD_SEQUENCE_ID,
        TApplicationException.INVALID_MESSAGE_TYPE,
        TApplicationException.WRONG_METHOD_NAME,
        TApplicationException.MISSING_RESULT,
    }
)


def _message(exc: BaseException) -> str:
    """The whole text of an error (HBase's: the Java stack trace with its causes)."""
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(message, bytes):  # happybase asks thriftpy2 not to decode strings
        message = message.decode("utf-8", errors="replace")
    return str(message)


_IN_TRANSITION_CALLS = frozenset({"getTableRegions"})
"""Thrift1 calls whose internal error means a region in transition. HBase 2.6's
``getTableRegions`` reads each region's server name, and throws a NullPointerException
while a region has none (it is being opened, moved or split); the gateway sends that
as ``TApplicationException(INTERNAL_ERROR, "Internal error processing
getTableRegions")``, with the Java exception only in its own log. Seen in a chaos
trial: a master's planning gave up (exit 1) in the second a raw region was reopened."""


def is_transient(exc: BaseException) -> bool:
    """Whether waiting may cure ``exc``: a transport failure, a desynchronised
    Thrift stream, an internal error of a call that fails while a region is in
    transition (:data:`_IN_TRANSITION_CALLS`), or an answer of HBase naming a
    :data:`TRANSIENT_HBASE_ERRORS`."""
    if isinstance(exc, TRANSPORT_ERRORS):
        return True
    if isinstance(exc, TApplicationException):
        if exc.type in _DESYNC:
            return True
        if exc.type == TApplicationException.INTERNAL_ERROR:
            call = _message(exc).rpartition("Internal error processing ")[2].strip()
            return call in _IN_TRANSITION_CALLS
    return _TRANSIENT.search(_message(exc)) is not None


def store_error(exc: BaseException, address: str) -> ServiceUnavailable | StoreRejected:
    """The nightfold error for a failed request to the gateway at ``address``.

    The one place that decides between riding an error out (transient:
    :class:`ServiceUnavailable`) and counting it (:class:`StoreRejected`).
    """
    if is_transient(exc):
        return ServiceUnavailable("hbase", f"{address}: {_reason(exc)}")
    return StoreRejected("hbase", f"{address}: {_reason(exc)}")


def put_batches(
    rows: Iterable[Row], max_rows: int, max_bytes: int
) -> Iterator[list[tuple[bytes, Columns]]]:
    """Group rows into write batches of at most ``max_rows`` rows and, unless a
    single cell is bigger, at most ``max_bytes`` of keys, qualifiers and values.

    A row too big for one batch is spread over consecutive batches, each with a
    part of its cells (the same key appears in each): a row's cells then do not
    land atomically, which nothing relies on -- a chunk counts as written only
    once every batch is in, and a retry rewrites the same bytes. Every cell of
    the input appears in exactly one batch, in input order.
    """
    batch: list[tuple[bytes, Columns]] = []
    size = 0
    for key, cells in rows:
        part: dict[bytes, bytes] = {}
        for column, value in cells.items():
            cost = len(key) + len(column) + len(value)
            if (batch or part) and size + cost > max_bytes:
                if part:
                    batch.append((key, part))
                    part = {}
                yield batch
                batch, size = [], 0
            part[column] = value
            size += cost
        batch.append((key, part))
        if len(batch) >= max_rows:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for an error message (HBase's carry Java stack traces)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, TTransportException) and isinstance(cause, ConnectionRefusedError):
        return "connection refused (is the HBase Thrift server running?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the HBase Thrift server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    lines = _message(exc).strip().splitlines()
    first = lines[0].strip() if lines else type(exc).__name__
    first = _JAVA_PACKAGE.sub("", first)  # org.apache.hadoop.hbase.XyzException -> XyzException
    if isinstance(exc, TTransportException) and first == "TSocket read 0 bytes":
        first = "connection closed by the server"
    return first if len(first) <= 200 else first[:197] + "..."


_SCANNER_LOST = ("scanner id is invalid", "unknownscanner", "scannertimeout", "scannerreset")


def _scanner_lost(exc: BaseException) -> bool:
    """HBase's way of saying our scanner is gone (expired lease, gateway forgot the id)."""
    first = _reason(exc).lower()
    return any(sign in first for sign in _SCANNER_LOST)


class HBaseStore:
    """A :class:`~nightfold.common.store.base.Store` over one happybase connection.

    ``table_prefix`` is happybase's: every table name becomes ``prefix_name``, so
    tests and tenants get their own tables on one HBase. Not thread-safe.
    """

    def __init__(
        self,
        host: str,
        port: int = 9090,
        *,
        table_prefix: str | None = None,
        timeout_ms: int = 30_000,
        transport: str = "buffered",
        protocol: str = "binary",
    ) -> None:
        self.host = host
        self.port = port
        self._addr = (host, port)
        self._options: dict[str, Any] = {
            "host": host,
            "port": port,
            "timeout": timeout_ms,
            "table_prefix": table_prefix,
            "transport": transport,
            "protocol": protocol,
            "autoconnect": False,
        }
        self._conn: happybase.Connection | None = None
        self._connect()

    @property
    def table_prefix(self) -> str | None:
        """happybase's table prefix: table ``t`` is HBase's ``<prefix>_t``."""
        prefix: str | None = self._options["table_prefix"]
        return prefix

    def __repr__(self) -> str:
        prefix = self._options["table_prefix"]
        return f"HBaseStore({self.host}:{self.port}, table_prefix={prefix!r})"

    # -- connection and error mapping -------------------------------------------------

    def _unavailable(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable("hbase", f"{self.host}:{self.port}: {_reason(exc)}")

    def _answered(self, exc: BaseException) -> ServiceUnavailable | StoreRejected:
        """An error HBase answered with: transient or a deterministic rejection."""
        return store_error(exc, f"{self.host}:{self.port}")

    def _connect(self) -> happybase.Connection:
        """Open a connection and prove the gateway answers (a wrong transport hangs here)."""
        conn = happybase.Connection(**self._options)
        try:
            conn.open()
            conn.client.getTableNames()
        # Any answer here is an outage, not a refusal of a request: the gateway's
        # HBase is starting or unreachable (callers ride it out).
        except (*TRANSPORT_ERRORS, *HBASE_ERRORS) as exc:
            self._discard(conn)
            raise self._unavailable(exc) from exc
        self._conn = conn
        return conn

    @staticmethod
    def _discard(conn: happybase.Connection | None) -> None:
        if conn is None:
            return
        try:
            conn.close()
        except (*TRANSPORT_ERRORS, *HBASE_ERRORS):  # already broken: nothing to save
            pass

    def _reconnect(self, exc: BaseException) -> happybase.Connection:
        log.warning("hbase %s:%s: %s; reconnecting once", self.host, self.port, _reason(exc))
        self._drop_connection()
        time.sleep(RECONNECT_PAUSE_S)
        return self._connect()

    @property
    def connection(self) -> happybase.Connection:
        """The live connection, reopened if an earlier failure dropped it."""
        return self._conn if self._conn is not None else self._connect()

    def _call(self, fn: Callable[[happybase.Connection], T]) -> T:
        """Run an idempotent request; on a transport error reconnect and try once more.

        Not an outage backoff (that is the caller's, ``common/outage.py``): the
        usual transport error is the gateway having closed our idle socket, which
        a fresh one cures at once. A second failure is an outage: raised as
        ServiceUnavailable for the caller's policy to ride out.
        """
        try:
            return fn(self.connection)
        except TRANSPORT_ERRORS as exc:
            conn = self._reconnect(exc)
        except HBASE_ERRORS as exc:
            raise self._answered(exc) from exc
        try:
            return fn(conn)
        except TRANSPORT_ERRORS as exc:
            self._drop_connection()
            raise self._unavailable(exc) from exc
        except HBASE_ERRORS as exc:
            raise self._answered(exc) from exc

    def _drop_connection(self) -> None:
        self._discard(self._conn)
        self._conn = None

    # -- the Store protocol ---------------------------------------------------------------

    def ensure_table(self, table: str, families: Sequence[str]) -> None:
        """Create ``table`` (one version per cell) unless it exists; a concurrent create is fine."""

        def create(conn: happybase.Connection) -> None:
            if table.encode() in conn.tables():
                return
            try:
                conn.create_table(table, {name: {"max_versions": 1} for name in families})
            except AlreadyExists:  # someone else created it meanwhile
                pass
            except HBaseIOError as exc:
                # HBase 2's gateway reports that race as IOError(TableExistsException).
                if "TableExistsException" not in _reason(exc):
                    raise

        self._call(create)

    def scan(
        self,
        table: str,
        key_range: KeyRange,
        *,
        columns: Sequence[bytes] | None = None,
        batch_size: int = 1000,
        keys_only: bool = False,
        ahead: bool = False,
    ) -> Iterator[Row]:
        """Yield rows of ``key_range`` in key order; see the Store protocol.

        ``batch_size`` is HBase's scanner caching (rows per Thrift round trip).
        ``ahead`` reads the next batches on a connection of its own, in a thread
        (:mod:`~nightfold.common.store.ahead`), while the caller works on this
        one: this store's connection stays free for the caller's writes.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not ahead:
            return self._scan(table, key_range, columns, batch_size, keys_only)

        @contextlib.contextmanager
        def alone() -> Iterator[Iterator[Row]]:
            other = HBaseStore(
                self.host,
                self.port,
                table_prefix=self._options["table_prefix"],
                timeout_ms=self._options["timeout"],
                transport=self._options["transport"],
                protocol=self._options["protocol"],
            )
            rows = other._scan(table, key_range, columns, batch_size, keys_only)
            try:
                yield rows
            finally:
                rows.close()
                other.close()

        return read_ahead(alone, batch_size, AHEAD_BATCHES, name=f"scan-ahead {table}")

    def _scan(
        self,
        table: str,
        key_range: KeyRange,
        columns: Sequence[bytes] | None,
        batch_size: int,
        keys_only: bool,
    ) -> Generator[Row, None, None]:
        start = key_range.start
        stop = key_range.end or None
        column_list = list(columns) if columns is not None else None
        retried = False
        while True:
            conn: happybase.Connection | None = None
            try:
                conn = self.connection
                rows = conn.table(table).scan(
                    row_start=start or None,
                    row_stop=stop,
                    columns=column_list,
                    batch_size=batch_size,
                    filter=KEYS_ONLY_FILTER if keys_only else None,
                )
                try:
                    # Cells arrive as a Thrift map and are sorted here: cheaper than HBase's
                    # sortedColumns (a TColumn struct per cell to decode) on the worker's hot path.
                    for key, cells in rows:
                        yield key, ({} if keys_only else dict(sorted(cells.items())))
                        start = key + b"\x00"  # resume point: right after the last row given out
                        retried = False
                finally:
                    # A caller that stops early closes happybase's scanner; on a dead
                    # connection that fails (thriftpy2 even asserts), and nobody can act on it.
                    with contextlib.suppress(*TRANSPORT_ERRORS, *HBASE_ERRORS, AssertionError):
                        rows.close()
                return
            except _SCAN_BREAKS as exc:
                if conn is not None and conn is not self._conn:
                    # Another call on this store reconnected (or close() was called) while
                    # this scan was paused; its scanner died with the old socket, where
                    # thriftpy2 fails with an assert. Reopen on the current connection.
                    log.warning("hbase %s:%s: connection replaced; reopening scan", *self._addr)
                    continue
                if isinstance(exc, AssertionError):
                    raise
                if retried:
                    self._drop_connection()
                    raise self._unavailable(exc) from exc
                retried = True
                self._reconnect(exc)
            except HBASE_ERRORS as exc:
                if retried or not _scanner_lost(exc):
                    raise (self._unavailable(exc) if retried else self._answered(exc)) from exc
                # The gateway dropped our scanner (its lease ran out while the caller
                # was busy between batches): open a new one at the resume point.
                retried = True
                log.warning("hbase %s:%s: %s; reopening scan", self.host, self.port, _reason(exc))

    def put_many(self, table: str, rows: Iterable[Row], *, batch_size: int = 1000) -> int:
        """Write rows; returns the row count.

        One ``mutateRows`` call carries at most ``batch_size`` rows and about
        :data:`PUT_BATCH_BYTES` of cell data (:func:`put_batches`), so many big
        rows never build one huge Thrift call. Each call is resent whole after a
        reconnect (puts of the same cells are idempotent). happybase's own
        ``batch_size`` counts cells, not rows, so batching is done here.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        count = 0

        def counted() -> Iterator[Row]:
            nonlocal count
            for row in rows:
                count += 1
                yield row

        for batch in put_batches(counted(), batch_size, PUT_BATCH_BYTES):
            self._send(table, batch)
        return count

    def _send(self, table: str, rows: list[tuple[bytes, Columns]]) -> None:
        def send(conn: happybase.Connection) -> None:
            batch = conn.table(table).batch()
            for key, cells in rows:
                batch.put(key, cells)
            batch.send()

        self._call(send)

    def region_starts(self, table: str) -> list[bytes]:
        """Start keys of the regions after the first, sorted: the planner's cut points."""
        regions = self._call(lambda conn: conn.table(table).regions())
        return sorted(r["start_key"] for r in regions if r["start_key"])

    def probe_keys(
        self, table: str, key_range: KeyRange, limit: int, *, reverse: bool = False
    ) -> list[bytes]:
        """At most ``limit`` keys of ``key_range`` (see the Store protocol): one scanner,
        keys only, one batch of ``limit`` rows, closed at once.

        A reversed HBase scan starts at its (inclusive) start row and stops before its
        (exclusive) stop row, i.e. ``[end, start)`` mirrored; so it starts at ``end``
        with one row to spare and no stop row, and the rows outside the range are
        dropped here: still at most ``limit + 1`` rows read.
        """
        if limit < 1:
            raise ValueError("limit must be >= 1")

        def forward(conn: happybase.Connection) -> list[bytes]:
            rows = conn.table(table).scan(
                row_start=key_range.start or None,
                row_stop=key_range.end or None,
                limit=limit,
                batch_size=limit,
                filter=KEYS_ONLY_FILTER,
            )
            return [key for key, _ in rows]

        def backward(conn: happybase.Connection) -> list[bytes]:
            rows = conn.table(table).scan(
                row_start=key_range.end or None,
                limit=limit + 1,
                batch_size=limit + 1,
                filter=KEYS_ONLY_FILTER,
                reverse=True,
            )
            keys = [key for key, _ in rows]
            return [key for key in keys if key in key_range][:limit]

        return self._call(backward if reverse else forward)

    def delete_range(self, table: str, key_range: KeyRange) -> int:
        """Delete every row in ``key_range`` (all families), ``DELETE_BATCH`` rows per request.

        Each batch of keys comes from its own short scan, closed before the deletes
        are sent, so no scanner stays open across writes. Under a transport retry a
        batch may already have been applied; the count then leaves those rows out
        (deleting is idempotent, counting is best effort).
        """
        deleted = 0
        start = key_range.start
        while True:
            part = KeyRange(start, key_range.end)
            with contextlib.closing(self._scan(table, part, None, 1000, True)) as scan:
                keys = [key for key, _ in itertools.islice(scan, DELETE_BATCH)]
            if keys:
                deleted += self._delete(table, keys)
            start = keys[-1] + b"\x00" if keys else b""
            if len(keys) < DELETE_BATCH or (key_range.end and start >= key_range.end):
                return deleted

    def _delete(self, table: str, keys: list[bytes]) -> int:
        def delete(conn: happybase.Connection) -> None:
            batch = conn.table(table).batch()
            for key in keys:
                batch.delete(key)
            batch.send()

        self._call(delete)
        return len(keys)

    def delete_cells(
        self, table: str, deletes: Iterable[CellDelete], *, batch_size: int = DELETE_BATCH
    ) -> int:
        """Delete whole rows or columns of rows, ``batch_size`` rows per ``mutateRows`` call.

        A column delete removes every version of the column (the gateway's
        ``deleteColumns``). Batches are resent whole after a reconnect (deleting is
        idempotent). Errors map as for :meth:`put_many`.
        """
        return sum(self._send_deletes(table, b) for b in in_batches(deletes, batch_size))

    def _send_deletes(self, table: str, deletes: list[CellDelete]) -> int:
        def send(conn: happybase.Connection) -> None:
            batch = conn.table(table).batch()
            for key, columns in deletes:
                if columns is None:  # happybase lists the table's families: the whole row
                    batch.delete(key)
                elif columns:  # an empty mutation list would be an error at the gateway
                    batch.delete(key, columns=list(columns))
            batch.send()

        self._call(send)
        return len(deletes)

    def drop_table(self, table: str) -> None:
        """Disable and delete ``table`` if it exists."""

        def drop(conn: happybase.Connection) -> None:
            if table.encode() not in conn.tables():
                return
            try:
                conn.delete_table(table, disable=True)
            except HBaseIOError as exc:
                if "TableNotFoundException" not in _reason(exc):  # lost a race: fine
                    raise

        self._call(drop)

    def close(self) -> None:
        """Close the socket; the store reconnects if used again."""
        self._drop_connection()
