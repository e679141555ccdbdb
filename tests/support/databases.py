"""A fresh database per test: SQLite in a temp dir, or a MariaDB database of its own
(:func:`mariadb_database` also gives each benchmark its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tests.support.cleanup import clean_up
from tests.support.services import require_service, unique_name


def _probe_mysql(url: str) -> None:
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind`` (sqlite or mariadb), dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'nightfold.db'}"
        return
    base = require_service("MariaDB", "NIGHTFOLD_DATABASE_URL", _probe_mysql)
    with mariadb_database(base, "nightfold_t") as url:
        yield url


@contextmanager
def mariadb_database(
    base_url: str,
    prefix: str,
    *,
    attempts: int = 1,
    say: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """The URL of a new, empty database ``<prefix><hex>`` on the server of ``base_url``;
    dropped after (``attempts`` and ``say``: :func:`tests.support.cleanup.clean_up`)."""
    name = unique_name(prefix)
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}`"))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        clean_up(lambda: _drop(admin, name), f"drop database {name}", attempts=attempts, say=say)
        admin.dispose()


def _drop(admin: Engine, name: str) -> None:
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
