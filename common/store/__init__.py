"""Pick a store backend from a URL, the way SQLAlchemy picks a database.

    hbase://host:port[?table_prefix=xyz&timeout_ms=30000&transport=buffered&protocol=binary]
    local:///abs/path/store.sqlite      (absolute path)
    local://relative/path.sqlite        (relative to the working directory)

Parsing is separate from connecting (:func:`parse_store_url`) so a bad URL is
reported before any socket is opened, and so it can be tested without a
server. Error messages show the URL with any password replaced by ``***``
(:func:`nightfold.common.urls.mask_url`, the one masker).
Backends are imported lazily: the embedded store never loads happybase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from nightfold.common.errors import ConfigError
from nightfold.common.store.base import CellDelete, Columns, Row, Store
from nightfold.common.urls import mask_url

__all__ = [
    "CellDelete",
    "Columns",
    "HBaseURL",
    "LocalURL",
    "Row",
    "Store",
    "open_store",
    "parse_store_url",
]

DEFAULT_HBASE_PORT = 9090
DEFAULT_TIMEOUT_MS = 30_000
_TABLE_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HBASE_OPTIONS = {"table_prefix", "timeout_ms", "transport", "protocol"}
_TRANSPORTS = ("buffered", "framed")
_PROTOCOLS = ("binary", "compact")


@dataclass(frozen=True)
class HBaseURL:
    """A parsed ``hbase://`` URL: where the Thrift1 gateway is and how to talk to it."""

    host: str
    port: int = DEFAULT_HBASE_PORT
    table_prefix: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    transport: str = "buffered"
    protocol: str = "binary"


@dataclass(frozen=True)
class LocalURL:
    """A parsed ``local://`` URL: the SQLite file of the embedded store."""

    path: Path


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"bad store URL {mask_url(url)!r}: {why}")


def _int_option(url: str, name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad(url, f"{name} must be an integer, got {value!r}") from None
    if number <= 0:
        raise _bad(url, f"{name} must be positive, got {number}")
    return number


def _parse_hbase(url: str) -> HBaseURL:
    parts = urlsplit(url)
    netloc, path, query = parts.netloc, parts.path, parts.query
    if parts.username is not None or parts.password is not None:
        raise _bad(url, "hbase URLs take no credentials (the Thrift1 gateway has no login)")
    if path not in ("", "/"):
        raise _bad(url, f"unexpected path {path!r}; use hbase://host:port")
    if not parts.hostname:
        raise _bad(url, "missing host; use hbase://host:port")
    try:
        port = DEFAULT_HBASE_PORT if parts.port is None else parts.port
    except ValueError:
        raise _bad(url, f"invalid port in {netloc!r}") from None
    if port == 0:
        raise _bad(url, f"invalid port in {netloc!r}")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - _HBASE_OPTIONS)
    if unknown:
        raise _bad(url, f"unknown option(s) {', '.join(unknown)}")
    prefix = options.get("table_prefix")
    if prefix is not None and not _TABLE_PREFIX.fullmatch(prefix):
        raise _bad(url, f"table_prefix must match {_TABLE_PREFIX.pattern}, got {prefix!r}")
    transport = options.get("transport", "buffered")
    if transport not in _TRANSPORTS:
        raise _bad(url, f"transport must be one of {', '.join(_TRANSPORTS)}")
    protocol = options.get("protocol", "binary")
    if protocol not in _PROTOCOLS:
        raise _bad(url, f"protocol must be one of {', '.join(_PROTOCOLS)}")
    timeout = options.get("timeout_ms")
    return HBaseURL(
        host=parts.hostname,
        port=port,
        table_prefix=prefix,
        timeout_ms=DEFAULT_TIMEOUT_MS
        if timeout is None
        else _int_option(url, "timeout_ms", timeout),
        transport=transport,
        protocol=protocol,
    )


def _parse_local(url: str, netloc: str, path: str, query: str) -> LocalURL:
    if query:
        raise _bad(url, "local store URLs take no options")
    if "@" in netloc:
        raise _bad(url, "local store URLs take no credentials")
    # local:///abs/x.sqlite -> netloc "" and path "/abs/x.sqlite";
    # local://rel/x.sqlite  -> netloc "rel" and path "/x.sqlite".
    raw = path if not netloc else netloc + path
    if not raw or raw.endswith("/"):
        raise _bad(url, "missing file name; use local:///abs/path/store.sqlite")
    return LocalURL(path=Path(raw))


def parse_store_url(url: str) -> HBaseURL | LocalURL:
    """Parse a store URL without connecting.

    Raises :class:`ConfigError` (naming the URL, password masked) when the URL is
    malformed, its scheme unknown, or an option invalid.
    """
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), "expected scheme://..., e.g. hbase://host:9090 or local:///path")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    if parts.fragment:
        raise _bad(url, "unexpected '#' fragment")
    scheme = parts.scheme.lower()
    if scheme == "hbase":
        return _parse_hbase(url)
    if scheme == "local":
        return _parse_local(url, parts.netloc, parts.path, parts.query)
    raise _bad(url, f"unknown scheme {parts.scheme!r}; expected hbase:// or local://")


def open_store(url: str) -> Store:
    """Open the store named by ``url`` (see the module docstring for the forms).

    Raises :class:`ConfigError` for a bad URL and
    :class:`~nightfold.common.errors.ServiceUnavailable` when the backend cannot
    be reached (HBase down, SQLite file not writable).
    """
    spec = parse_store_url(url)
    if isinstance(spec, HBaseURL):
        from nightfold.common.store.hbase import HBaseStore

        return HBaseStore(
            spec.host,
            spec.port,
            table_prefix=spec.table_prefix,
            timeout_ms=spec.timeout_ms,
            transport=spec.transport,
            protocol=spec.protocol,
        )
    from nightfold.common.store.local import LocalStore

    return LocalStore(spec.path)
