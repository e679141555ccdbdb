"""``nightfold db``: schema migrations."""

from __future__ import annotations

import click

from nightfold.cli.options import with_runtime
from nightfold.common.db.engine import db_errors
from nightfold.common.db.migrate import current_revision, ensure_current, head_revision, upgrade
from nightfold.ops.runtime import Runtime


@click.group()
def db() -> None:
    """Database schema: upgrade and check."""


@db.command("upgrade")
@with_runtime()
def upgrade_cmd(rt: Runtime) -> None:
    """Bring the schema to this version's head (idempotent)."""
    engine = rt.engine(check_schema=False)
    with db_errors(rt.settings.database_url):
        upgrade(engine)
        click.echo(f"schema at {current_revision(engine)}")


@db.command("check")
@with_runtime()
def check_cmd(rt: Runtime) -> None:
    """Exit non-zero unless the schema is at this version's head."""
    engine = rt.engine(check_schema=False)
    with db_errors(rt.settings.database_url):
        ensure_current(engine)
        click.echo(f"schema at head {head_revision(engine)}")
