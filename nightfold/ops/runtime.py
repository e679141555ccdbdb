"""Opens the backends a process needs from its settings, once, and closes them.

The one place that turns URLs into objects (engine, store, publisher,
consumer), so the CLI, the demo and the tests wire processes the same way.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import Engine, text

from nightfold.common.config import Settings
from nightfold.common.db.engine import db_errors, make_engine
from nightfold.common.db.migrate import ensure_current
from nightfold.common.db.poll import queued_chunks
from nightfold.common.jobs import import_job_modules
from nightfold.common.store import open_store
from nightfold.common.store.base import Store
from nightfold.common.transport import (
    EMBEDDED_SCHEMES,
    Consumer,
    Publisher,
    open_consumer,
    open_publisher,
)
from nightfold.common.urls import scheme_of


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        import_job_modules(settings.job_modules)

    def engine(self, *, check_schema: bool = True) -> Engine:
        """The database engine; by default refuses a schema not at head."""
        if self._engine is None:
            url = self.settings.database_url
            _make_parent_dir(url)
            engine = make_engine(url)
            with db_errors(url), engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            self._engine = engine
        if check_schema:
            with db_errors(self.settings.database_url):
                ensure_current(self._engine)
        return self._engine

    def store(self) -> Store:
        url = self.settings.store_url
        _make_parent_dir(url)
        return open_store(url)

    def publisher(self) -> Publisher:
        return open_publisher(self.settings.broker_url)

    def consumer(self, prefetch: int) -> Consumer:
        url = self.settings.broker_url
        if scheme_of(url) not in EMBEDDED_SCHEMES:
            return open_consumer(url, prefetch)
        queued = queued_chunks(self.engine(), self.settings.database_url)
        return open_consumer(url, prefetch, queued=queued)

    def close(self) -> None:
        if self._engine is not None:
            with contextlib.suppress(Exception):
                self._engine.dispose()
            self._engine = None


def _make_parent_dir(url: str) -> None:
    """Embedded backends live in files: create their folder on first use."""
    scheme = scheme_of(url)
    if scheme == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    elif scheme == "local":
        parts = urlsplit(url)
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
