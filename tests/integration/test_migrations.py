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
from nightfold.common.errors import RET_SCHEMA, SchemaOutOfDate
from tests.support.cli import nightfold, one_line_error


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


def test_database_at_an_older_revision_is_refused_by_the_cli(database_url: str) -> None:
    # Given a database migrated only to the first revision (an older release's schema)
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0001")
        assert current_revision(engine) == "0001" != head_revision(engine)
    finally:
        engine.dispose()
    # When a worker starts against it
    res = nightfold("worker", "run", env={"NIGHTFOLD_DATABASE_URL": database_url})
    # Then it refuses with one line that names the revisions and the fix, exit 4
    assert res.returncode == RET_SCHEMA, res.stderr
    line = one_line_error(res)
    assert "0001" in line and "nightfold db upgrade" in line
    # And after the upgrade the schema is current
    assert nightfold("db", "upgrade", env={"NIGHTFOLD_DATABASE_URL": database_url}).returncode == 0
