"""Fixtures for integration tests against the real services (never imitations).

Each service is found by URL: its environment variable first, then
``.nightfold/services.env`` (written by ``deploy/local/services up`` once the
services are healthy). A service that is absent or does not answer its probe
*skips* its tests on a laptop and *fails* them in CI (``CI=true``), so CI can
never go green by skipping. Every test gets its own namespace (an HBase table
prefix here; a database or vhost for the other services) and it is removed
afterwards, so tests never see each other's rows.

To add a service: a session fixture calling :func:`require_service` with the
service's URL and a cheap probe, and a function fixture that carves a private
namespace out of it and cleans it up.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import happybase
import pytest

from nightfold.common.store import HBaseURL, mask_url, parse_store_url

REPO = Path(__file__).resolve().parents[2]
SERVICES_ENV = REPO / ".nightfold" / "services.env"
PROBE_TIMEOUT_S = 5.0


def in_ci() -> bool:
    """True when running in CI, where a missing service is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def read_env_file(path: Path = SERVICES_ENV) -> dict[str, str]:
    """``KEY=value`` lines of a dotenv-style file (``export``, quotes and comments allowed)."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def service_url(var: str) -> str | None:
    """The URL in environment variable ``var``, else in ``.nightfold/services.env``."""
    return os.environ.get(var) or read_env_file().get(var) or None


def unavailable(message: str) -> NoReturn:
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: required services must be up)", pytrace=False)
    pytest.skip(message)


def require_service(name: str, url: str | None, probe: Callable[[str], object]) -> str:
    """``url`` if ``probe(url)`` succeeds; otherwise skip (locally) or fail (in CI).

    ``probe`` should be cheap and independent of the code under test: it only
    establishes that the real service is there and answering.
    """
    if not url:
        unavailable(f"{name}: no URL configured (environment or {SERVICES_ENV})")
    try:
        probe(url)
    except Exception as exc:  # any failure means "not usable here"
        unavailable(f"{name} at {mask_url(url)} unavailable: {type(exc).__name__}: {exc}")
    return url


def tcp_probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise unless something accepts TCP connections at ``host:port``."""
    socket.create_connection((host, port), timeout=timeout).close()


def with_query(url: str, **options: str) -> str:
    """``url`` with query options added or replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | options
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- HBase ---------------------------------------------------------------------------------


def _hbase_spec(url: str) -> HBaseURL:
    spec = parse_store_url(url)
    if not isinstance(spec, HBaseURL):
        raise ValueError(f"not an hbase:// URL: {mask_url(url)}")
    return spec


def _hbase_connection(spec: HBaseURL, table_prefix: str | None = None) -> happybase.Connection:
    return happybase.Connection(
        spec.host,
        spec.port,
        timeout=int(PROBE_TIMEOUT_S * 1000) if table_prefix is None else spec.timeout_ms,
        table_prefix=table_prefix,
        transport=spec.transport,
        protocol=spec.protocol,
    )


def probe_hbase(url: str) -> None:
    """The Thrift gateway accepts a connection and lists tables (so HBase itself answers)."""
    spec = _hbase_spec(url)
    tcp_probe(spec.host, spec.port)
    conn = _hbase_connection(spec)
    try:
        conn.tables()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def hbase_service_url() -> str:
    """The real HBase's store URL (``NIGHTFOLD_STORE_URL``), probed once per session."""
    return require_service("hbase", service_url("NIGHTFOLD_STORE_URL"), probe_hbase)


@pytest.fixture
def hbase_url(hbase_service_url: str) -> Iterator[str]:
    """A store URL with a private ``table_prefix``; its tables are dropped afterwards."""
    prefix = "t" + secrets.token_hex(5)
    yield with_query(hbase_service_url, table_prefix=prefix)
    conn = _hbase_connection(_hbase_spec(hbase_service_url), table_prefix=prefix)
    try:
        for table in conn.tables():
            conn.delete_table(table, disable=True)
    finally:
        conn.close()
