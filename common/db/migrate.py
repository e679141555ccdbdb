"""Schema migrations through Alembic: the only way the schema changes.

The Alembic scripts live in the ``nightfold.migrations`` package, so an
installed nightfold carries them; no alembic.ini is needed.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from nightfold.common.errors import SchemaOutOfDate


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (env.py reuses its connection)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("nightfold.migrations")))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def ensure_current(engine: Engine) -> None:
    """Refuse to work on a schema that is not at this code's head revision."""
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at revision {current or 'none'}, this nightfold needs "
            f"{head}: run `nightfold db upgrade`"
        )
