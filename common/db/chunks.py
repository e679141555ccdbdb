"""Repository functions for chunks: plan, window, publish, claim, heartbeat, complete.

Each transition is one conditional UPDATE, checked first against
``CHUNK_TRANSITIONS`` (``check_chunk_move``: an illegal move raises
IllegalTransition): through :func:`move`, or, on the claim and completion path
every chunk takes, a statement built once that calls the same check; the row count
tells whether this actor won. Completion,
heartbeat, failure and release carry ``owner`` and ``attempt`` (fencing): a
worker whose lease was taken over changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from typing import TYPE_CHECKING, Any
from typing import cast as typed

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)

from nightfold.common.db.clock import db_now, db_now_plus
from nightfold.common.db.events import add_chunk_events, add_chunk_row_events, add_event
from nightfold.common.db.models import Chunk, QuarantinedRow, Run, Worker
from nightfold.common.db.runs import RunInfo, get_run, later_generation, run_info
from nightfold.common.db.runs import move as runs_move
from nightfold.common.errors import ChunkLost, RunConflict
from nightfold.common.keys import KeyRange
from nightfold.common.states import (
    RUN_STATE_OF_STAGE,
    WORKING_RUN_STATES,
    ChunkState,
    RunState,
    Stage,
    after_failure,
    check_chunk_move,
)

if TYPE_CHECKING:
    from nightfold.common.db.segments import SegmentSpec

CHUNKS = typed(Table, Chunk.__table__)
"""The chunks table for Core statements (an UPDATE of the ORM entity takes the
ORM's bulk path: a third more client time per statement)."""


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk to be recorded by the planner."""

    stage: Stage
    idx: int
    key_range: KeyRange

    def __post_init__(self) -> None:
        if self.idx < 0:
            raise ValueError(f"chunk index must be >= 0, got {self.idx}")


@dataclass(frozen=True)
class Claim:
    """A chunk this worker holds: what to compute and the fencing token."""

    chunk_id: int
    run: RunInfo
    stage: Stage
    idx: int
    key_range: KeyRange
    owner: str
    attempt: int
    resume_key: bytes | None = None
    """A map chunk's checkpoint: resume the scan here (None: at the start)."""
    next_seq: int = 0
    """The number of the next segment (the chunk's committed segments so far)."""
    rows_committed: int = 0
    """Rows the committed segments folded."""
    malformed_committed: int = 0
    """Malformed rows among them."""

    @property
    def resume_from(self) -> bytes:
        """Where this attempt's scan starts: after the last committed segment."""
        return self.resume_key if self.resume_key is not None else self.key_range.start

    @property
    def label(self) -> str:
        return f"{self.run.label} {self.stage.value}[{self.idx}] attempt {self.attempt}"


@dataclass(frozen=True)
class DueHint:
    """A queued chunk whose hint is due: never published, or unclaimed long after."""

    chunk_id: int
    stage: str
    idx: int
    republish: bool
    """Published before (so the broker may still hold the hint): a republish."""


@dataclass(frozen=True)
class DeadChunk:
    """The first chunk of a run that ran out of attempts, and its last error."""

    stage: str
    idx: int
    error: str | None


@dataclass(frozen=True)
class Claimable:
    """A queued chunk of a live run: a candidate of the embedded transport's poll."""

    chunk_id: int
    run_id: int
    stage: str
    idx: int


@dataclass(frozen=True)
class Quarantined:
    """A malformed raw row a run set aside, and why."""

    chunk_idx: int
    row_key: bytes
    reason: str


def insert_plan(conn: Connection, run_id: int, specs: Sequence[ChunkSpec]) -> None:
    """Record the whole plan (one multi-row INSERT per thousand chunks)."""
    rows = [
        {
            "run_id": run_id,
            "stage": s.stage.value,
            "idx": s.idx,
            "start_key": s.key_range.start,
            "end_key": s.key_range.end,
            "state": ChunkState.PENDING.value,
            "attempt": 0,
            "rows_read": 0,
            "rows_malformed": 0,
        }
        for s in specs
    ]
    for i in range(0, len(rows), 1000):
        conn.execute(insert(Chunk), rows[i : i + 1000])


def move(
    conn: Connection,
    where: ColumnElement[bool],
    src: ChunkState,
    dst: ChunkState,
    **values: object,
) -> int:
    """Move the chunks matching ``where`` that are in ``src`` to ``dst`` (setting
    ``values`` too) in one conditional UPDATE; how many moved.

    The one statement that changes a chunk's state. Raises IllegalTransition,
    before any UPDATE, when ``src -> dst`` is not in ``CHUNK_TRANSITIONS``.
    """
    check_chunk_move(src, dst)
    result = conn.execute(
        update(CHUNKS).where(where, Chunk.state == src.value).values(state=dst.value, **values)
    )
    return int(result.rowcount)


def counts_by_state(conn: Connection, run_id: int, stage: Stage | None = None) -> dict[str, int]:
    q = select(Chunk.state, func.count()).where(Chunk.run_id == run_id).group_by(Chunk.state)
    if stage is not None:
        q = q.where(Chunk.stage == stage.value)
    return {state: int(n) for state, n in conn.execute(q)}


def counts_by_stage(conn: Connection, run_id: int) -> dict[tuple[str, str], int]:
    """Chunks of the run by (stage, state)."""
    q = (
        select(Chunk.stage, Chunk.state, func.count())
        .where(Chunk.run_id == run_id)
        .group_by(Chunk.stage, Chunk.state)
    )
    return {(str(stage), str(state)): int(n) for stage, state, n in conn.execute(q)}


def open_window(
    conn: Connection, run_id: int, stage: Stage, max_in_flight: int, actor: str
) -> list[int]:
    """Move pending chunks to queued while fewer than ``max_in_flight`` are queued or claimed.

    This one mechanism bounds the broker's backlog and caps the fleet's
    concurrency per run: a worker can only claim a queued chunk.
    """
    active = conn.execute(
        select(func.count()).where(
            Chunk.run_id == run_id,
            Chunk.stage == stage.value,
            Chunk.state.in_([ChunkState.QUEUED.value, ChunkState.CLAIMED.value]),
        )
    ).scalar_one()
    room = max_in_flight - int(active)
    if room <= 0:
        return []
    ids = list(
        conn.execute(
            select(Chunk.id)
            .where(
                Chunk.run_id == run_id,
                Chunk.stage == stage.value,
                Chunk.state == ChunkState.PENDING.value,
            )
            .order_by(Chunk.idx)
            .limit(room)
        ).scalars()
    )
    if not ids:
        return []
    move(conn, Chunk.id.in_(ids), ChunkState.PENDING, ChunkState.QUEUED, published_at=None)
    add_chunk_events(conn, run_id, "queued", ids, actor=actor)
    return ids


def due_for_publish(
    conn: Connection, run_id: int, republish_seconds: float, limit: int = 10_000
) -> list[DueHint]:
    """Queued chunks whose hint was never published, or not claimed long after it was."""
    rows = conn.execute(
        select(Chunk.id, Chunk.stage, Chunk.idx, Chunk.published_at.is_not(None))
        .where(
            Chunk.run_id == run_id,
            Chunk.state == ChunkState.QUEUED.value,
            or_(
                Chunk.published_at.is_(None),
                Chunk.published_at < db_now_plus(-republish_seconds),
            ),
        )
        .order_by(Chunk.idx)
        .limit(limit)
    )
    return [DueHint(int(c), str(s), int(i), bool(p)) for c, s, i, p in rows]


def queued_count(conn: Connection, run_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                Chunk.run_id == run_id, Chunk.state == ChunkState.QUEUED.value
            )
        ).scalar_one()
    )


def mark_published(conn: Connection, chunk_ids: Sequence[int]) -> None:
    for i in range(0, len(chunk_ids), 1000):
        conn.execute(
            update(Chunk)
            .where(Chunk.id.in_(chunk_ids[i : i + 1000]), Chunk.state == ChunkState.QUEUED.value)
            .values(published_at=db_now())
        )


def reclaim_expired(conn: Connection, run_id: int, max_attempts: int, actor: str) -> list[int]:
    """Take back claims whose lease ran out: pending again, or dead when out of attempts."""
    return _take_back(
        conn,
        run_id,
        max_attempts,
        actor,
        Chunk.lease_expires_at < db_now(),
        kind="lease_expired",
        why="lease expired",
    )


def reclaim_orphaned(
    conn: Connection, run_id: int, max_attempts: int, actor: str, dead_seconds: float
) -> list[int]:
    """Take back claims whose worker is gone, before their lease runs out:
    the owner's ``workers`` row says it stopped, or was last seen more than
    ``dead_seconds`` ago (database clock). Counted as an attempt, like a lease
    expiry. A claim whose owner has no ``workers`` row is left to its lease.

    The staleness is part of each UPDATE's WHERE, so a worker that beat in
    between keeps its chunk; a frozen worker that wakes later is fenced out
    (its heartbeat and completion carry the old owner and attempt).
    """
    gone = exists().where(
        Worker.id == Chunk.owner,
        or_(
            Worker.stopped_at.is_not(None),
            Worker.last_seen_at < db_now_plus(-dead_seconds),
        ),
    )
    return _take_back(
        conn, run_id, max_attempts, actor, gone, kind="worker_dead", why="worker not seen"
    )


def _take_back(
    conn: Connection,
    run_id: int,
    max_attempts: int,
    actor: str,
    condition: ColumnElement[bool],
    *,
    kind: str,
    why: str,
) -> list[int]:
    """Move the run's claims matching ``condition`` back to pending (``kind`` event),
    or to dead when out of attempts: one fenced UPDATE per chunk, which re-checks
    ``condition`` so an owner that recovered in between keeps its claim."""
    found = list(
        conn.execute(
            select(Chunk.id, Chunk.attempt, Chunk.owner).where(
                Chunk.run_id == run_id,
                Chunk.state == ChunkState.CLAIMED.value,
                condition,
            )
        )
    )
    taken: list[int] = []
    for chunk_id, attempt, owner in found:
        dst = after_failure(int(attempt), max_attempts)
        moved = move(
            conn,
            and_(
                Chunk.id == chunk_id,
                Chunk.attempt == attempt,
                Chunk.owner == owner,
                condition,
            ),
            ChunkState.CLAIMED,
            dst,
            owner=None,
            lease_expires_at=None,
            error=f"{why} (attempt {attempt})",
        )
        if moved == 1:
            add_event(
                conn,
                run_id,
                kind if dst is ChunkState.PENDING else "dead",
                chunk_id=chunk_id,
                actor=actor,
                attempt=int(attempt),
                detail=None if owner is None else f"owner {owner}",
            )
            taken.append(int(chunk_id))
    return taken


def held_claims(conn: Connection, run_id: int) -> int:
    """Chunks of the run claimed under a lease that has not run out: work that a
    worker may still be writing."""
    return int(
        conn.execute(
            select(func.count()).where(
                Chunk.run_id == run_id,
                Chunk.state == ChunkState.CLAIMED.value,
                Chunk.lease_expires_at >= db_now(),
            )
        ).scalar_one()
    )


def first_dead(conn: Connection, run_id: int) -> DeadChunk | None:
    row = conn.execute(
        select(Chunk.stage, Chunk.idx, Chunk.error)
        .where(Chunk.run_id == run_id, Chunk.state == ChunkState.DEAD.value)
        .order_by(Chunk.id)
        .limit(1)
    ).one_or_none()
    return DeadChunk(str(row.stage), int(row.idx), row.error) if row else None


def claimable(conn: Connection, limit: int, exclude: Sequence[int] = ()) -> list[Claimable]:
    """Queued chunks of live runs, oldest first: the embedded transport's poll."""
    q = (
        select(Chunk.id, Chunk.run_id, Chunk.stage, Chunk.idx)
        .join(Run, Run.id == Chunk.run_id)
        .where(
            Chunk.state == ChunkState.QUEUED.value,
            Run.cancel_requested.is_(False),
            Run.state.in_([s.value for s in WORKING_RUN_STATES]),
        )
        .order_by(Chunk.run_id, Chunk.idx)
        .limit(limit)
    )
    if exclude:
        q = q.where(Chunk.id.notin_(list(exclude)))
    return [Claimable(int(c), int(r), str(s), int(i)) for c, r, s, i in conn.execute(q)]


LIVE_RUN_STATES = tuple(s.value for s in WORKING_RUN_STATES)


def _live_run() -> ColumnElement[bool]:
    """The chunk's run is running a stage (mapping, reducing, combining) and not asked
    to cancel."""
    return exists().where(
        Run.id == Chunk.run_id,
        Run.cancel_requested.is_(False),
        Run.state.in_(LIVE_RUN_STATES),
    )


def claim(conn: Connection, chunk_id: int, me: str) -> Claim | None:
    """Claim a queued chunk of a live run for ``me``; None when someone else won
    or the hint is stale (chunk not queued, run finished or cancelled).

    Three statements: the chunk with its run (one join), the conditional UPDATE,
    the event. The UPDATE also requires the attempt read with the row, so the new
    attempt is known without reading it back (a chunk requeued in that instant is
    left to its own, newer hint). The statements are built once (:func:`_claim_one`).
    """
    row = conn.execute(_CLAIM_ONE_READ, {"chunk_id": chunk_id}).one_or_none()
    if row is None:
        return None
    run = run_info(row)
    seen = int(row.chunk_attempt)
    check_chunk_move(ChunkState.QUEUED, ChunkState.CLAIMED)
    moved = conn.execute(
        _claim_one(run.params.lease_seconds), {"chunk_id": chunk_id, "seen": seen, "me": me}
    ).rowcount
    if moved != 1:
        return None
    attempt = seen + 1
    add_event(conn, run.id, "claimed", chunk_id=chunk_id, actor=me, attempt=attempt)
    return Claim(
        chunk_id=chunk_id,
        run=run,
        stage=Stage(row.chunk_stage),
        idx=int(row.chunk_idx),
        key_range=KeyRange(bytes(row.chunk_start), bytes(row.chunk_end)),
        owner=me,
        attempt=attempt,
        resume_key=None if row.chunk_resume is None else bytes(row.chunk_resume),
        next_seq=int(row.chunk_seq or 0),
        rows_committed=int(row.chunk_committed or 0),
        malformed_committed=int(row.chunk_malformed or 0),
    )


# The claim and completion statements are built once and executed with their values:
# building a statement (its expressions, bind parameters and cache key) cost the
# worker more CPU than sending it, on the path every chunk takes twice.

_CLAIM_ONE_READ = (
    select(
        Run.__table__,
        Chunk.stage.label("chunk_stage"),
        Chunk.idx.label("chunk_idx"),
        Chunk.start_key.label("chunk_start"),
        Chunk.end_key.label("chunk_end"),
        Chunk.attempt.label("chunk_attempt"),
        Chunk.resume_key.label("chunk_resume"),
        Chunk.next_seq.label("chunk_seq"),
        Chunk.rows_committed.label("chunk_committed"),
        Chunk.malformed_committed.label("chunk_malformed"),
    )
    .join_from(Chunk, Run, Run.id == Chunk.run_id)
    .where(Chunk.id == bindparam("chunk_id"), Chunk.state == ChunkState.QUEUED.value)
)


def _claimed_values(lease_seconds: float) -> dict[str, object]:
    """What a claim sets besides the state and owner (the same for one or many)."""
    return {
        "attempt": Chunk.attempt + 1,
        "lease_expires_at": db_now_plus(lease_seconds),
        "claimed_at": db_now(),
        "rows_read": Chunk.rows_committed,  # progress starts at the checkpoint
        "rows_malformed": 0,
        "last_key": None,
        "split_state": 0,
    }


@lru_cache(maxsize=32)
def _claim_one(lease_seconds: float) -> Executable:
    """The UPDATE of :func:`claim` (parameters ``chunk_id``, ``seen``, ``me``): queued,
    at the attempt read, in a live run."""
    return (
        update(CHUNKS)
        .where(
            Chunk.id == bindparam("chunk_id"),
            Chunk.attempt == bindparam("seen"),
            _live_run(),
            Chunk.state == ChunkState.QUEUED.value,
        )
        .values(
            state=ChunkState.CLAIMED.value, owner=bindparam("me"), **_claimed_values(lease_seconds)
        )
    )


def claim_many(
    conn: Connection, chunk_ids: Sequence[int], me: str, known: KnownRuns | None = None
) -> dict[int, Claim]:
    """Claim for ``me`` those of ``chunk_ids`` that are queued in a live run, by
    chunk id; the others (someone else's, stale hints) are left out.

    Four statements however many chunks: a locking read of the queued ones
    (``FOR UPDATE SKIP LOCKED`` on MariaDB: a row another claimer holds is
    skipped, not waited for; SQLite's ``BEGIN IMMEDIATE`` already serializes
    writers), their runs, one UPDATE per run (its lease), one INSERT of the
    ``claimed`` events. The rows read are locked, so each UPDATE moves all of its
    run's rows or, when the run stopped in between, none (then none is claimed).
    Each claim is what :func:`claim` gives: the same owner, attempt + 1, lease.

    With ``known`` (a worker process's :class:`KnownRuns`), runs read before are not
    read again: three statements, one chunk or many, once a run is known.
    """
    ids = sorted(set(chunk_ids))
    if not ids:
        return {}
    rows = conn.execute(_CLAIM_MANY_READ, {"chunk_ids": ids}).all()
    if not rows:
        return {}
    runs = known if known is not None else KnownRuns()
    missing = sorted({int(x.run_id) for x in rows} - runs.keys())
    if missing:
        runs.update(
            (int(r.id), run_info(r)) for r in conn.execute(_RUNS_READ, {"run_ids": missing})
        )
    check_chunk_move(ChunkState.QUEUED, ChunkState.CLAIMED)
    claims: dict[int, Claim] = {}
    for run_id, group in groupby(rows, key=lambda x: int(x.run_id)):
        mine = list(group)
        run = runs[run_id]
        moved = conn.execute(
            _claim_many(run.params.lease_seconds),
            {"chunk_ids": [int(x.id) for x in mine], "me": me},
        ).rowcount
        if moved == 0:  # the run stopped since the read: its hints are stale
            continue
        if moved != len(mine):
            raise RuntimeError(f"claim of {len(mine)} locked chunks moved {moved}")
        for x in mine:
            claims[int(x.id)] = Claim(
                chunk_id=int(x.id),
                run=run,
                stage=Stage(x.stage),
                idx=int(x.idx),
                key_range=KeyRange(bytes(x.start_key), bytes(x.end_key)),
                owner=me,
                attempt=int(x.attempt) + 1,
                resume_key=None if x.resume_key is None else bytes(x.resume_key),
                next_seq=int(x.next_seq or 0),
                rows_committed=int(x.rows_committed or 0),
                malformed_committed=int(x.malformed_committed or 0),
            )
    add_chunk_row_events(conn, "claimed", list(claims))
    return claims


class KnownRuns(dict[int, RunInfo]):
    """Runs a worker process has read with its claims, so that later claims of the same
    run do not read its row again (a claim's work needs only what never changes once
    the run's chunks are queued: job, day, generation, params and the plan's hot
    groups, all written before the plan commits). The state fields of a run read here
    (state, owner, cancel_requested, error) are those of its first claim: never decide
    on them from a claim (the claim's UPDATE checks that the run is live; heartbeats
    tell a worker when it stopped). Holds the ``LIMIT`` runs read last.
    """

    LIMIT = 32

    def __setitem__(self, run_id: int, run: RunInfo) -> None:
        while len(self) >= self.LIMIT and run_id not in self:
            del self[next(iter(self))]
        super().__setitem__(run_id, run)

    def update(self, *args: Any, **kwargs: Any) -> None:  # through __setitem__ (the bound)
        for run_id, run in dict(*args, **kwargs).items():
            self[run_id] = run


_CLAIM_MANY_READ = (
    select(
        Chunk.id,
        Chunk.run_id,
        Chunk.stage,
        Chunk.idx,
        Chunk.start_key,
        Chunk.end_key,
        Chunk.attempt,
        Chunk.resume_key,
        Chunk.next_seq,
        Chunk.rows_committed,
        Chunk.malformed_committed,
    )
    .where(
        Chunk.id.in_(bindparam("chunk_ids", expanding=True)),
        Chunk.state == ChunkState.QUEUED.value,
        _live_run(),
    )
    .order_by(Chunk.run_id, Chunk.id)
    .with_for_update(skip_locked=True)
)

_RUNS_READ = select(Run.__table__).where(Run.id.in_(bindparam("run_ids", expanding=True)))


@lru_cache(maxsize=32)
def _claim_many(lease_seconds: float) -> Executable:
    """The UPDATE of :func:`claim_many` for one run's locked rows (``chunk_ids``, ``me``)."""
    return (
        update(CHUNKS)
        .where(
            Chunk.id.in_(bindparam("chunk_ids", expanding=True)),
            _live_run(),
            Chunk.state == ChunkState.QUEUED.value,
        )
        .values(
            state=ChunkState.CLAIMED.value, owner=bindparam("me"), **_claimed_values(lease_seconds)
        )
    )


def _ours(c: Claim) -> ColumnElement[bool]:
    """The chunk carries our fencing token: same owner and attempt."""
    return and_(Chunk.id == c.chunk_id, Chunk.owner == c.owner, Chunk.attempt == c.attempt)


def _fenced(c: Claim) -> ColumnElement[bool]:
    """The claim is still ours: same owner and attempt, still claimed (fencing)."""
    return and_(_ours(c), Chunk.state == ChunkState.CLAIMED.value)


still_ours = _fenced
"""The fencing condition, for the repositories that extend a claim (segments, splits)."""


def _fenced_move(
    conn: Connection, c: Claim, dst: ChunkState, event: str, detail: str, **values: object
) -> bool:
    """Move our claim from claimed to ``dst``, fenced by owner and attempt, and
    record ``event``; False (nothing written) when the claim is no longer ours.

    The one body of :func:`complete`, :func:`fail` and :func:`release`, which
    differ only in where the chunk goes, what else the row gets and the event.
    """
    if move(conn, _ours(c), ChunkState.CLAIMED, dst, lease_expires_at=None, **values) != 1:
        return False
    add_event(
        conn, c.run.id, event, chunk_id=c.chunk_id, actor=c.owner, attempt=c.attempt, detail=detail
    )
    return True


SPLIT_REQUESTED = 1
"""``chunks.split_state`` when the master asked the owner to split (``segments.py``)."""


@dataclass(frozen=True)
class Beat:
    """What a lease heartbeat learned."""

    stop: bool
    """The run was cancelled or is no longer mapping or reducing."""
    split: bool
    """The master asks the owner to split the chunk (``split_state`` 1)."""


def heartbeat(conn: Connection, c: Claim, rows_read: int, last_key: bytes | None) -> bool:
    """Extend the lease and record progress; returns whether the worker should stop
    (the run was cancelled or is no longer mapping or reducing).

    Raises ChunkLost when the claim is no longer ours.
    """
    return beat(conn, c, rows_read, last_key).stop


def beat(conn: Connection, c: Claim, rows_read: int, last_key: bytes | None) -> Beat:
    """:func:`heartbeat`, also saying whether a split of the chunk was requested.

    One statement while all is well: the UPDATE is fenced, requires a live run and
    no split request, so it matches exactly when the claim is ours, the run goes
    on and nobody asked for a split. Only when it matches nothing does a read tell
    the cases apart (a lost claim, a stopped run: the lease is then not extended,
    the worker releases the chunk or drops it; a split asked: the lease is
    extended by a second UPDATE and the owner told).
    """
    progress = {
        "lease_expires_at": db_now_plus(c.run.params.lease_seconds),
        "rows_read": rows_read,
        "last_key": last_key[:512] if last_key else None,
    }
    result = conn.execute(
        update(CHUNKS)
        .where(_fenced(c), _live_run(), Chunk.split_state != SPLIT_REQUESTED)
        .values(**progress)
    )
    if result.rowcount == 1:
        return Beat(stop=False, split=False)
    row = conn.execute(select(Chunk.split_state).where(_fenced(c))).first()
    if row is None:
        raise ChunkLost(f"{c.label}: claim lost (lease expired and taken over, or run reset)")
    if int(row[0] or 0) == SPLIT_REQUESTED:
        moved = conn.execute(update(CHUNKS).where(_fenced(c), _live_run()).values(**progress))
        if moved.rowcount == 1:
            return Beat(stop=False, split=True)
    # a finished run (failed, cancelled, or reset) wants no more writes from this claim
    return Beat(stop=True, split=False)


QUARANTINE_LIMIT = 10_000
"""Malformed rows recorded per chunk; beyond it only the counts (and HBase) keep them."""


def complete(
    conn: Connection,
    c: Claim,
    rows_read: int,
    rows_malformed: int,
    rejects: Sequence[tuple[bytes, str]] = (),
) -> None:
    """Mark the chunk done, fenced by owner and attempt, and quarantine its
    malformed rows in the same transaction; raises ChunkLost when fenced out."""
    check_chunk_move(ChunkState.CLAIMED, ChunkState.DONE)
    moved = conn.execute(
        _COMPLETE_ONE,
        {
            "chunk_id": c.chunk_id,
            "token_owner": c.owner,
            "token_attempt": c.attempt,
            "rows": rows_read,
            "malformed": rows_malformed,
        },
    ).rowcount
    if moved != 1:
        raise ChunkLost(f"{c.label}: cannot complete, claim lost")
    add_event(
        conn,
        c.run.id,
        "done",
        chunk_id=c.chunk_id,
        actor=c.owner,
        attempt=c.attempt,
        detail=f"rows={rows_read} malformed={rows_malformed}",
    )
    if rejects:
        conn.execute(
            insert(QuarantinedRow),
            [
                {"run_id": c.run.id, "chunk_idx": c.idx, "row_key": key[:512], "reason": reason}
                for key, reason in rejects[:QUARANTINE_LIMIT]
            ],
        )


@dataclass(frozen=True)
class Completion:
    """A finished chunk to be marked done by :func:`complete_many`."""

    claim: Claim
    rows_read: int
    rows_malformed: int
    rejects: Sequence[tuple[bytes, str]] = ()
    segment: SegmentSpec | None = None
    """A map chunk's last segment, recorded in the same transaction once the chunk is
    done (:func:`~nightfold.common.db.segments.record_last`); the counters are then the
    chunk's totals (its earlier segments' and this attempt's), the rejects the last
    segment's (the earlier ones were quarantined with their segments)."""


def complete_many(conn: Connection, done: Sequence[Completion]) -> set[int]:
    """Mark several claims done at once, each fenced by its own owner and attempt;
    returns the chunk ids that were fenced out (lost: nothing written for them).

    Two statements while all are still ours: one UPDATE whose WHERE carries
    every (id, owner, attempt) and whose counters come from CASE on the id, and
    one INSERT of the ``done`` events (plus the quarantined rows, if any). When
    it matches fewer rows than given, one read of the rows now done under our
    tokens tells which were lost (rows this transaction updated stay locked, and
    no one else can hold our token).
    """
    if not done:
        return set()
    by_id = {d.claim.chunk_id: d for d in done}
    if len(by_id) != len(done):
        raise ValueError("complete_many: a chunk given twice")
    ids = sorted(by_id)
    check_chunk_move(ChunkState.CLAIMED, ChunkState.DONE)
    values: dict[str, object] = {
        "chunk_ids": ids,
        "tokens": [(i, by_id[i].claim.owner, by_id[i].claim.attempt) for i in ids],
    }
    for k, i in enumerate(ids):
        values[f"i{k}"] = i
        values[f"r{k}"] = by_id[i].rows_read
        values[f"m{k}"] = by_id[i].rows_malformed
    moved = conn.execute(_complete_many(len(ids)), values).rowcount
    won = ids
    if moved != len(ids):
        won = sorted(held(conn, [by_id[i].claim for i in ids], ChunkState.DONE))
    add_chunk_row_events(conn, "done", won, _DONE_DETAIL)
    rejects = [
        {
            "run_id": by_id[i].claim.run.id,
            "chunk_idx": by_id[i].claim.idx,
            "row_key": key[:512],
            "reason": reason,
        }
        for i in won
        for key, reason in by_id[i].rejects[:QUARANTINE_LIMIT]
    ]
    if rejects:
        conn.execute(insert(QuarantinedRow), rejects)
    return set(ids) - set(won)


_COMPLETE_ONE = (
    update(CHUNKS)
    .where(
        Chunk.id == bindparam("chunk_id"),
        Chunk.owner == bindparam("token_owner"),
        Chunk.attempt == bindparam("token_attempt"),
        Chunk.state == ChunkState.CLAIMED.value,
    )
    .values(
        state=ChunkState.DONE.value,
        lease_expires_at=None,
        done_at=db_now(),
        rows_read=bindparam("rows", type_=Integer),
        rows_malformed=bindparam("malformed", type_=Integer),
        error=None,
    )
)
"""The UPDATE of :func:`complete`: fenced by owner and attempt (``_ours``)."""

_OURS_MANY = and_(
    Chunk.id.in_(bindparam("chunk_ids", expanding=True)),
    tuple_(Chunk.id, Chunk.owner, Chunk.attempt).in_(bindparam("tokens", expanding=True)),
)
"""Each chunk of ``chunk_ids`` under its own token of ``tokens`` (id, owner, attempt)."""

_HELD_READ = select(Chunk.id).where(_OURS_MANY, Chunk.state == bindparam("state"))


def held(conn: Connection, claims: Sequence[Claim], state: ChunkState) -> set[int]:
    """The chunks of ``claims`` that are in ``state`` under their claim's own token
    (owner and attempt): how :func:`complete_many` tells its lost completions from
    the ones it made, and how a transaction whose COMMIT failed learns whether it
    landed. A claim's token is new with the claim (the attempt counts every claim),
    so no other transaction can have left a row in that state under it; only the
    one in doubt, or a later transaction of the same claim."""
    if not claims:
        return set()
    return {
        int(i)
        for i in conn.execute(
            _HELD_READ,
            {
                "chunk_ids": sorted(c.chunk_id for c in claims),
                "tokens": [(c.chunk_id, c.owner, c.attempt) for c in claims],
                "state": state.value,
            },
        ).scalars()
    }


_DONE_DETAIL = (
    literal("rows=")
    + cast(Chunk.rows_read, String)
    + literal(" malformed=")
    + cast(Chunk.rows_malformed, String)
)
"""A ``done`` event's detail, from the row just completed."""


@lru_cache(maxsize=128)
def _complete_many(n: int) -> Executable:
    """The UPDATE of :func:`complete_many` for ``n`` chunks: ``tokens`` fence them, and
    their counters come from CASE on the id (parameters ``i<k>``, ``r<k>``, ``m<k>``)."""

    def per_chunk(counter: str) -> ColumnElement[int]:
        return case(
            *[
                (Chunk.id == bindparam(f"i{k}"), bindparam(f"{counter}{k}", type_=Integer))
                for k in range(n)
            ]
        )

    return (
        update(CHUNKS)
        .where(_OURS_MANY, Chunk.state == ChunkState.CLAIMED.value)
        .values(
            state=ChunkState.DONE.value,
            lease_expires_at=None,
            done_at=db_now(),
            rows_read=per_chunk("r"),
            rows_malformed=per_chunk("m"),
            error=None,
        )
    )


def fail(conn: Connection, c: Claim, error: str) -> ChunkState | None:
    """Record a failed attempt: pending again, or dead when out of attempts.

    Returns the new state, or None when the claim was already lost.
    """
    dst = after_failure(c.attempt, c.run.params.max_attempts)
    event = "failed" if dst is ChunkState.PENDING else "dead"
    if not _fenced_move(conn, c, dst, event, error[:4000], owner=None, error=error[:4000]):
        return None
    return dst


def release(conn: Connection, c: Claim, reason: str) -> bool:
    """Give a chunk back unfinished (shutdown, cancel): not counted as an attempt."""
    return _fenced_move(
        conn, c, ChunkState.PENDING, "released", reason, owner=None, attempt=Chunk.attempt - 1
    )


@dataclass(frozen=True)
class Retried:
    """What an operator's retry did: the run back in ``stage``, ``chunks`` dead
    chunks pending again with their attempts reset."""

    run: RunInfo
    stage: Stage
    chunks: int


def retry_dead(conn: Connection, run_id: int, actor: str) -> Retried:
    """Bring a failed run back to life for its dead chunks only (``nightfold retry``).

    In the caller's transaction, all or nothing: the run moves ``failed`` back to
    the stage its dead chunks belong to (``mapping`` while a map chunk is not
    done, else ``reducing``) with its error, finish time and any cancel request
    cleared; its dead chunks move to ``pending`` with ``attempt`` 0 (so each gets
    ``max_attempts`` fresh attempts); every other chunk keeps its state, done
    work stays done. A master then drives the run as if it had never failed
    (``nightfold master run --day D`` resumes it; ``nightfold retry`` drives it).

    Fenced like every move: the run's UPDATE requires ``state = 'failed'`` (two
    operators retrying at once: one wins), and it is refused when a newer
    generation of the day exists (it owns the day's summaries now); the run row
    stays locked until commit, which ``--rerun`` checks
    (:func:`~nightfold.common.db.runs.lock_finished`). Raises RunConflict, with
    nothing changed, when the run is not failed, has a newer generation, or has
    no dead chunk (it failed before its plan: use ``--rerun``).
    """
    run = get_run(conn, run_id)
    if run is None:
        raise RunConflict(f"run {run_id} does not exist")
    if run.state is not RunState.FAILED:
        raise RunConflict(f"run {run.label} is {run.state.value}: only a failed run is retried")
    dead = list(
        conn.execute(
            select(Chunk.id, Chunk.stage).where(
                Chunk.run_id == run_id, Chunk.state == ChunkState.DEAD.value
            )
        )
    )
    if not dead:
        raise RunConflict(
            f"run {run.label} has no dead chunk to retry (it failed before its plan): "
            f"start a new generation with --rerun"
        )
    open_stages = set(
        conn.execute(
            select(Chunk.stage)
            .where(Chunk.run_id == run_id, Chunk.state != ChunkState.DONE.value)
            .distinct()
        ).scalars()
    )
    stage = next(s for s in Stage if s.value in open_stages)  # the earliest unfinished
    target = RUN_STATE_OF_STAGE[stage]
    if not runs_move(
        conn,
        run_id,
        RunState.FAILED,
        target,
        actor=actor,
        cancel_requested=False,
        finished_at=None,
    ):
        raise RunConflict(f"run {run.label} is no longer failed: someone else moved it")
    newer = later_generation(conn, run)
    if newer is not None:
        raise RunConflict(
            f"run {run.label} has a newer generation #{newer}: retry or rerun that one"
        )
    conn.execute(update(Run).where(Run.id == run_id).values(error=None))
    ids = [int(cid) for cid, _ in dead]
    for i in range(0, len(ids), 1000):
        move(
            conn,
            and_(Chunk.run_id == run_id, Chunk.id.in_(ids[i : i + 1000])),
            ChunkState.DEAD,
            ChunkState.PENDING,
            attempt=0,
            owner=None,
            lease_expires_at=None,
            published_at=None,
            error=None,
        )
    add_chunk_events(conn, run_id, "retried", ids, actor=actor)
    add_event(
        conn,
        run_id,
        "run_retried",
        actor=actor,
        detail=f"{len(ids)} dead chunk(s) pending again; {stage.value} stage",
    )
    again = get_run(conn, run_id)
    assert again is not None
    return Retried(again, stage, len(ids))


def rows_done(conn: Connection, run_id: int) -> int:
    """Raw rows folded by the run's finished map chunks."""
    return int(
        conn.execute(
            select(func.coalesce(func.sum(Chunk.rows_read), 0)).where(
                Chunk.run_id == run_id,
                Chunk.stage == Stage.MAP.value,
                Chunk.state == ChunkState.DONE.value,
            )
        ).scalar_one()
    )


def quarantined(conn: Connection, run_id: int, limit: int) -> list[Quarantined]:
    """The run's quarantined rows, in chunk order."""
    rows = conn.execute(
        select(QuarantinedRow.chunk_idx, QuarantinedRow.row_key, QuarantinedRow.reason)
        .where(QuarantinedRow.run_id == run_id)
        .order_by(QuarantinedRow.chunk_idx, QuarantinedRow.id)
        .limit(limit)
    )
    return [Quarantined(int(i), bytes(k), str(r)) for i, k, r in rows]
