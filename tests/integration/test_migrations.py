"""Alembic and the models agree, on SQLite and on the real MariaDB; an old
schema is refused with the one-line advice to upgrade."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import current_revision, ensure_current, head_revision, upgrade
from nightfold.common.db.models import Base
from nightfold.common.errors import SchemaOutOfDate


def test_migrations_match_models(engine: Engine) -> None:
    # Given a database migrated to head (the engine fixture)
    # When Alembic compares it with the models
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    # Then there is nothing to migrate
    assert diff == []
    assert current_revision(engine) == head_revision(engine)


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    ensure_current(engine)


def test_unmigrated_database_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="nightfold db upgrade"):
            ensure_current(engine)
    finally:
        engine.dispose()
