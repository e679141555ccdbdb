"""The MySQL schema as SQLAlchemy 2 models: the truth of every run.

Changed only through Alembic migrations (``migrations/``); ``nightfold db
check`` and the test suite assert the two agree.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Microsecond timestamps on MariaDB (DATETIME(6)); SQLite stores ISO strings.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Key = LargeBinary(512).with_variant(mysql.VARBINARY(512), "mysql", "mariadb")
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Up to 16 MB on MariaDB (a plain TEXT stops at 64 KB).
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Run(Base):
    """One (job, day, generation): its state, owner (the master) and counters."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("job", "day", "generation"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    day: Mapped[dt.date] = mapped_column(Date)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), index=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[str] = mapped_column(Text)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_malformed: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    hot_groups: Mapped[str | None] = mapped_column(LongText)
    """A sharded job's hot groups, recorded with the plan (``shards.encode_plan_hot``);
    NULL for an unsharded job, or a run planned before this column (then the
    planner's copy in HBase is read, ``keys.hot_groups_key``)."""
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Chunk(Base):
    """One work item of one stage of a run, with its lease and progress."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "idx"),
        Index("ix_chunks_run_id_stage_state", "run_id", "stage", "state"),
        Index("ix_chunks_state_lease_expires_at", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(8))
    idx: Mapped[int] = mapped_column(Integer)
    start_key: Mapped[bytes] = mapped_column(Key)
    end_key: Mapped[bytes] = mapped_column(Key)
    state: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    published_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_malformed: Mapped[int] = mapped_column(BigInteger, default=0)
    last_key: Mapped[bytes | None] = mapped_column(Key)
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    done_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # the map checkpoint (common/db/segments.py): where a taker resumes, and what counts
    resume_key: Mapped[bytes | None] = mapped_column(Key)
    """The scan resumes here (the key after the last committed segment's); None: start_key."""
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    """Committed segments of the chunk, so the number of the next one."""
    rows_committed: Mapped[int] = mapped_column(BigInteger, default=0)
    """Rows folded by the committed segments (but the last: it commits with the chunk's
    completion, which records the chunk's totals)."""
    malformed_committed: Mapped[int] = mapped_column(BigInteger, default=0)
    """Malformed rows among them."""
    split_state: Mapped[int] = mapped_column(Integer, default=0)
    """0 none, 1 the master asked the owner to split, 2 the owner declined (this claim)."""


class Segment(Base):
    """One committed piece of a map chunk's output: its partials are the rows of
    the partials table keyed (bucket, chunk idx, seq, span); the reduce reads only
    the committed ones. Appended by the chunk's owner in a transaction fenced by
    owner and attempt, which also moves the chunk's checkpoint."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("run_id", "chunk_idx", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    chunk_idx: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    """The attempt that committed it."""
    span: Mapped[str] = mapped_column(String(16))
    """The name of its rows' key span (``keys.span_id``), part of its partials' keys."""
    resume_key: Mapped[bytes] = mapped_column(Key)
    """The first key after the segment's rows (the chunk's new checkpoint)."""
    rows_read: Mapped[int] = mapped_column(BigInteger)
    rows_malformed: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class Worker(Base):
    """A worker process, seen through its heartbeat."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    last_seen_at: Mapped[dt.datetime] = mapped_column(Timestamp, index=True)
    current_chunk_id: Mapped[int | None] = mapped_column(BigId)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class RunEvent(Base):
    """Append-only log of every transition, for status and audit."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigId)
    chunk_id: Mapped[int | None] = mapped_column(BigId)
    at: Mapped[dt.datetime] = mapped_column(Timestamp)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(128))
    attempt: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class QuarantinedRow(Base):
    """A malformed raw row: its key and why, recorded with the chunk that met it.

    Written in the same transaction as the chunk's completion (fenced), so a
    retried chunk never records its rows twice. The row itself stays in HBase.
    """

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_run_id_chunk_idx", "run_id", "chunk_idx"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    chunk_idx: Mapped[int] = mapped_column(Integer)
    row_key: Mapped[bytes] = mapped_column(Key)
    reason: Mapped[str] = mapped_column(String(64))
