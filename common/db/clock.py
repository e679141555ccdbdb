"""The database's clock, as SQL expressions, and durations between its times.

Leases and heartbeats are compared with the database's own clock, never a
process's: machines drift, the database is the one clock every actor shares.
:func:`seconds_between` turns two times read back from it into seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import DateTime

Instant = dt.datetime | str
"""A time read back from the database: a ``datetime``, or an ISO string where
SQLite returns a raw SQL expression (``db_now()`` selected as a column) as text."""


def seconds_between(start: Instant | None, end: Instant | None) -> float | None:
    """``end - start`` in seconds, or ``None`` when either is unknown (not set yet).

    The one place that turns two database times into a duration, whichever form
    the backend returned them in: a heartbeat's age, a run's elapsed time, a
    chunk's duration. Callers choose what an unknown duration means to them.
    """
    if start is None or end is None:
        return None
    if isinstance(start, str):
        start = dt.datetime.fromisoformat(start)
    if isinstance(end, str):
        end = dt.datetime.fromisoformat(end)
    return (end - start).total_seconds()


class db_now(FunctionElement[Any]):
    """``now`` with microseconds, on the database's clock."""

    type = DateTime()
    inherit_cache = True


class db_now_plus(FunctionElement[Any]):
    """``now + seconds`` (seconds may be negative or fractional)."""

    type = DateTime()
    inherit_cache = True
    # part of the statement cache key: each distinct offset compiles once
    _traverse_internals = [("seconds", InternalTraversal.dp_plain_obj)]

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        super().__init__()


@compiles(db_now)
def _now_default(element: db_now, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP(6)"


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


@compiles(db_now_plus)
def _plus_default(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    micros = round(element.seconds * 1_000_000)
    return f"TIMESTAMPADD(MICROSECOND, {micros}, CURRENT_TIMESTAMP(6))"


@compiles(db_now_plus, "sqlite")
def _plus_sqlite(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', '{element.seconds:+.6f} seconds')"
