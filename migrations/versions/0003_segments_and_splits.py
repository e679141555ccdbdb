"""segments and splits: a map chunk's committed segments (checkpoints, mid-chunk
resume) and the run-time split request on chunks (issue 15)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 06:41:24.658711
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chunk_idx", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("span", sa.String(length=16), nullable=False),
        sa.Column(
            "resume_key",
            sa.LargeBinary(length=512)
            .with_variant(sa.VARBINARY(length=512), "mariadb")
            .with_variant(sa.VARBINARY(length=512), "mysql"),
            nullable=False,
        ),
        sa.Column("rows_read", sa.BigInteger(), nullable=False),
        sa.Column("rows_malformed", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_segments_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint(
            "run_id", "chunk_idx", "seq", name=op.f("uq_segments_run_id_chunk_idx_seq")
        ),
    )
    with op.batch_alter_table("chunks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "resume_key",
                sa.LargeBinary(length=512)
                .with_variant(sa.VARBINARY(length=512), "mariadb")
                .with_variant(sa.VARBINARY(length=512), "mysql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("next_seq", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("rows_committed", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("malformed_committed", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("split_state", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("chunks", schema=None) as batch_op:
        batch_op.drop_column("split_state")
        batch_op.drop_column("malformed_committed")
        batch_op.drop_column("rows_committed")
        batch_op.drop_column("next_seq")
        batch_op.drop_column("resume_key")

    op.drop_table("segments")
