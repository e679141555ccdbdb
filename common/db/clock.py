"""The database's clock, as SQL expressions.

Leases and heartbeats are compared with the database's own clock, never a
process's: machines drift, the database is the one clock every actor shares.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import DateTime


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
