"""Engines and sessions, with SQLite tuned for several processes and errors mapped.

MariaDB in production; SQLite (WAL, busy timeout) for the embedded backend,
where SQLite serializes writers and the same conditional UPDATEs stay correct.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import PoolResetState

from nightfold.common.errors import AccessRefused, ConfigError, ServiceUnavailable
from nightfold.common.outage import OutagePolicy
from nightfold.common.urls import mask_url

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Build an engine for a ``mysql+pymysql://`` or ``sqlite:///`` URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {mask_url(url)!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"timeout": 60, "check_same_thread": False},
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let BEGIN take the write lock at once (BEGIN IMMEDIATE): a conditional
        # UPDATE then never fails halfway on a lock upgrade under contention.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if backend in ("mysql", "mariadb"):
        if parsed.get_driver_name() not in ("pymysql", ""):
            raise ConfigError(f"database URL {mask_url(url)!r}: use the mysql+pymysql driver")
        engine = create_engine(
            parsed.set(drivername="mysql+pymysql"),
            pool_pre_ping=False,  # _ping_if_idle: only connections idle for a while
            pool_reset_on_return=None,  # _reset_if_in_transaction: only when one is open
            pool_recycle=3600,
            pool_size=pool_size,
            max_overflow=pool_size,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": 10, "charset": "utf8mb4"},
        )
        event.listen(engine, "connect", _note_checkin)
        event.listen(engine, "connect", _bound_idle_transactions)
        event.listen(engine, "checkin", _note_checkin)
        event.listen(engine, "checkout", _ping_if_idle)
        event.listen(engine, "reset", _reset_if_in_transaction)
        return engine
    raise ConfigError(
        f"database URL {mask_url(url)!r}: unsupported backend {backend!r} "
        "(use mysql+pymysql:// or sqlite:///)"
    )


PING_IF_IDLE_SECONDS = 1.0
"""A pooled MariaDB connection idle longer than this is pinged before use.

A connection handed back moments ago is used at once: pinging it would add a
round trip to every short transaction (a claim, a completion: a third of their
round trips) to catch only a server restart within that instant, which the
first statement then reports like a restart in the middle of the transaction
(every caller already rides those out). One idle longer -- a server restart or
a dropped connection in between is then likely -- is pinged, and replaced if dead."""

IDLE_TRANSACTION_SECONDS = 15
"""MariaDB ends a connection of ours whose open transaction has waited this long for
our next statement (``idle_transaction_timeout``), rolling it back.

Why: a process frozen inside a transaction (SIGSTOP, a paused VM, a stalled disk)
keeps the row locks it took, among them the shared lock its fenced UPDATEs take on
the run's row (the live-run check), and its TCP connection stays open. The master's
next UPDATE of that row then waits for it, and every worker's statement queued
behind the master waits too: the chaos runs saw a whole night stand still for as
long as one worker was frozen (two split_vs_takeover trials in 400). Our
transactions never wait for their client longer than a few milliseconds, so 15 s
only ever ends a stuck one: the frozen worker's claim is then taken over as after a
kill, and the worker, when it wakes, finds its connection gone and its claim fenced."""

_UNKNOWN_VARIABLE = 1193
"""A server without ``idle_transaction_timeout`` (MySQL, MariaDB before 10.3)."""


def _bound_idle_transactions(dbapi_conn: Any, _record: Any) -> None:
    try:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET SESSION idle_transaction_timeout = {IDLE_TRANSACTION_SECONDS}")
    except Exception as exc:
        if not (exc.args and exc.args[0] == _UNKNOWN_VARIABLE):
            raise
        log.debug("this server has no idle_transaction_timeout: stuck transactions stay")


_IN_TRANSACTION = 1
"""PyMySQL's ``SERVER_STATUS_IN_TRANS``: the server's own flag, in every reply."""


def _note_checkin(_dbapi_conn: Any, record: Any, *_: Any) -> None:
    record.info["nightfold_idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    idle = time.monotonic() - record.info.get("nightfold_idle_since", 0.0)
    if idle <= PING_IF_IDLE_SECONDS:
        return
    try:
        dbapi_conn.ping(reconnect=False)
    except Exception as exc:
        # the pool discards this connection and checks out (or opens) another
        raise DisconnectionError(f"pooled connection dead after {idle:.0f}s idle") from exc


def _reset_if_in_transaction(dbapi_conn: Any, _record: Any, state: PoolResetState) -> None:
    """Roll back a connection handed back to the pool only if the server says a
    transaction is open: after a COMMIT (every ``engine.begin()`` block) there is
    nothing to roll back, and the pool's unconditional ROLLBACK was one round trip
    of every transaction."""
    if state.transaction_was_reset or not state.asyncio_safe:
        return
    if getattr(dbapi_conn, "server_status", _IN_TRANSACTION) & _IN_TRANSACTION:
        dbapi_conn.rollback()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would defeat BEGIN IMMEDIATE.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@contextlib.contextmanager
def db_errors(url: str) -> Iterator[None]:
    """Map SQLAlchemy/PyMySQL connection errors to :class:`ServiceUnavailable`."""
    try:
        yield
    except DBAPIError as exc:
        if _error_code(exc) in _REFUSED_CODES or "CERTIFICATE_VERIFY_FAILED" in str(exc.orig):
            raise AccessRefused("database", f"{mask_url(url)}: {_short(exc)}") from exc
        if exc.connection_invalidated or _is_connect_error(exc):
            raise ServiceUnavailable("database", f"{mask_url(url)}: {_short(exc)}") from exc
        raise
    except SQLAlchemyError as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Can't connect" in text or "unable to open database" in text:
            raise ServiceUnavailable("database", f"{mask_url(url)}: {text}") from exc
        raise


_CONNECT_CODES = {2003, 2005, 2006, 2013, 2055}
# Access denied for the user (1045), to the database (1044), no such database
# (1049), a statement the account may not run (1142 table, 1143 column, 1227
# privilege: e.g. `db upgrade` with a data-only account): the server answered, and
# waiting will not change its answer.
_REFUSED_CODES = {1044, 1045, 1049, 1142, 1143, 1227}
# Lock wait timeout (1205) and deadlock (1213): the transaction was rolled back and
# only needs running again, which every caller does for ServiceUnavailable.
_RETRY_CODES = {1205, 1213}


def _error_code(exc: DBAPIError) -> int | None:
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return args[0] if args and isinstance(args[0], int) else None


def _is_connect_error(exc: DBAPIError) -> bool:
    if _error_code(exc) in _CONNECT_CODES | _RETRY_CODES:
        return True
    text = str(exc.orig)
    return "unable to open database" in text or "Can't connect" in text


def _short(exc: DBAPIError) -> str:
    orig = exc.orig
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return str(orig).splitlines()[0] if str(orig) else type(orig).__name__


def retrying(url: str, fn: Callable[[], T], *, deadline: float, what: str) -> T:
    """Run ``fn`` (one short transaction) until it gets through, under the outage
    policy (``common/outage.py``) with ``deadline``; database connection errors
    are mapped to ServiceUnavailable. For steps that must not be lost to a
    database restart (complete, fail, release, master ticks)."""

    def attempt() -> T:
        with db_errors(url):
            return fn()

    return OutagePolicy(deadline).call(attempt, log=log, what=what)
