"""A fresh database per test: SQLite in a temp dir, or a MariaDB database of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
    name = unique_name("nightfold_t")
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}`"))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
