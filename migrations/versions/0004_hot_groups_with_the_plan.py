"""hot groups with the plan: a sharded job's hot list recorded on the run row in the
plan's transaction (before, only in HBase beside the partials)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 13:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "hot_groups",
                sa.Text()
                .with_variant(mysql.MEDIUMTEXT(), "mariadb")
                .with_variant(mysql.MEDIUMTEXT(), "mysql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("hot_groups")
