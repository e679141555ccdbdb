"""Repository functions for a map chunk's segments and its run-time split.

A map chunk's output is a sequence of **segments**. The owner writes a
segment's partials to the store first (keyed by bucket, chunk, seq and the name
of the segment's key span: :func:`nightfold.common.keys.segment_key`), then
commits the segment here:
one transaction, fenced by owner and attempt, that appends the segment row
(seq, the key the scan resumes at, its row counts and quarantined rows) and
moves the chunk's checkpoint. A segment counts only once it is committed: the
reduce reads the committed set (:func:`committed`) and ignores every other
partial row (a killed attempt's last one, a fenced-out late writer's).

So a kill at any instant loses nothing (the taker resumes at the checkpoint and
continues the numbering under its own attempt) and counts nothing twice (a
segment is committed by one attempt once; a retried transaction that had in
fact committed is recognised by its own row).

**Split.** The master flags a running chunk (``split_state`` 1) when no map
chunk is waiting; the owner performs the split at its next beat, in one fenced
transaction (:func:`split`): its end shrinks to the cut (a key beyond anything it
has read), the tail becomes a new pending map chunk. A split racing a takeover
fails the fence and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, func, insert, select, update

from nightfold.common.db.chunks import QUARANTINE_LIMIT, Claim, Completion, still_ours
from nightfold.common.db.chunks import SPLIT_REQUESTED as SPLIT_REQUESTED
from nightfold.common.db.clock import db_now, db_now_plus
from nightfold.common.db.events import add_event
from nightfold.common.db.models import Chunk, QuarantinedRow, Run, Segment
from nightfold.common.errors import ChunkLost
from nightfold.common.states import ChunkState, Stage

SPLITS_OFF = 10**9
"""A ``split_min_rows`` at least this large turns run-time splits off."""
SPLIT_NONE, SPLIT_DECLINED = 0, 2
"""``chunks.split_state``: nothing asked; (1, ``SPLIT_REQUESTED``: the master asked the
owner to split;) the owner declined (too little left), so the master does not ask
this claim again."""


@dataclass(frozen=True)
class SegmentSpec:
    """One segment as its owner commits it."""

    seq: int
    resume_key: bytes
    """The first key after the segment's rows: where the chunk's scan resumes."""
    span: bytes
    """The name of the segment's key span (``keys.span_id``), in its partials' keys."""
    rows_read: int
    rows_malformed: int
    rejects: Sequence[tuple[bytes, str]] = field(default_factory=tuple)


@dataclass(frozen=True)
class SegmentRef:
    """A committed segment, as the reduce needs it: which partial rows count."""

    chunk_idx: int
    seq: int
    span: bytes


def commit(conn: Connection, c: Claim, seg: SegmentSpec) -> None:
    """Append segment ``seg`` of our claim and move the chunk's checkpoint past it
    (extending the lease too); raises ChunkLost when the claim is not ours.

    Idempotent for the same attempt: a transaction retried after a lost reply,
    whose first try did commit, finds its own segment row and changes nothing.
    """
    moved = conn.execute(
        update(Chunk)
        .where(still_ours(c), Chunk.next_seq == seg.seq)
        .values(
            resume_key=seg.resume_key,
            next_seq=seg.seq + 1,
            rows_committed=Chunk.rows_committed + seg.rows_read,
            malformed_committed=Chunk.malformed_committed + seg.rows_malformed,
            lease_expires_at=db_now_plus(c.run.params.lease_seconds),
        )
    ).rowcount
    if moved != 1:
        if _committed_by(conn, c, seg.seq):
            return
        raise ChunkLost(f"{c.label}: cannot commit segment {seg.seq}, claim lost")
    conn.execute(
        insert(Segment).values(
            run_id=c.run.id,
            chunk_idx=c.idx,
            seq=seg.seq,
            attempt=c.attempt,
            span=seg.span.decode(),
            resume_key=seg.resume_key,
            rows_read=seg.rows_read,
            rows_malformed=seg.rows_malformed,
            created_at=db_now(),
        )
    )
    if seg.rejects:
        conn.execute(
            insert(QuarantinedRow),
            [
                {"run_id": c.run.id, "chunk_idx": c.idx, "row_key": key[:512], "reason": reason}
                for key, reason in seg.rejects[:QUARANTINE_LIMIT]
            ],
        )


def _committed_by(conn: Connection, c: Claim, seq: int) -> bool:
    return (
        conn.execute(
            select(Segment.id).where(
                Segment.run_id == c.run.id,
                Segment.chunk_idx == c.idx,
                Segment.seq == seq,
                Segment.attempt == c.attempt,
            )
        ).first()
        is not None
    )


def record_last(conn: Connection, done: Sequence[Completion]) -> None:
    """Record the last segments of map chunks just completed (``done``: the ones the
    completion moved to done, in this transaction): one multi-row INSERT.

    The completion's fenced move is the fence (it succeeds for the claim's owner and
    attempt only, and that attempt numbered its segments from the chunk's
    ``next_seq``), and ``(run, chunk, seq)`` is unique besides; the chunk's
    checkpoint columns are not moved any more (a done chunk is never resumed). So a
    map chunk's completion costs one statement more than a reduce item's, alone or in
    a batch."""
    rows = [
        {
            "run_id": d.claim.run.id,
            "chunk_idx": d.claim.idx,
            "seq": d.segment.seq,
            "attempt": d.claim.attempt,
            "span": d.segment.span.decode(),
            "resume_key": d.segment.resume_key,
            "rows_read": d.segment.rows_read,
            "rows_malformed": d.segment.rows_malformed,
            "created_at": db_now(),
        }
        for d in done
        if d.segment is not None
    ]
    if rows:  # one INSERT ... VALUES (...), (...) whatever the count
        conn.execute(insert(Segment).values(rows))


def completion(c: Claim, last: SegmentSpec, read: int, malformed: int) -> Completion:
    """The completion of a map chunk whose attempt read ``read`` rows (``malformed`` of
    them) after its checkpoint and wrote ``last`` as its last segment: the chunk's
    totals are its committed segments' and those."""
    return Completion(
        c,
        c.rows_committed + read,
        c.malformed_committed + malformed,
        last.rejects,
        last,
    )


def committed(conn: Connection, run_id: int) -> set[SegmentRef]:
    """The run's committed segments: the only partial rows a reduce may count."""
    rows = conn.execute(
        select(Segment.chunk_idx, Segment.seq, Segment.span).where(Segment.run_id == run_id)
    )
    return {SegmentRef(int(i), int(s), str(p).encode()) for i, s, p in rows}


def rows_committed(conn: Connection, run_id: int, chunk_idx: int) -> int:
    """Rows the committed segments of one map chunk folded."""
    return int(
        conn.execute(
            select(func.coalesce(func.sum(Segment.rows_read), 0)).where(
                Segment.run_id == run_id, Segment.chunk_idx == chunk_idx
            )
        ).scalar_one()
    )


# -- splitting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A claimed map chunk, as the master's split policy sees it."""

    chunk_id: int
    idx: int
    rows_read: int
    split_state: int


def split_view(conn: Connection, run_id: int) -> tuple[int, list[Running]]:
    """(map chunks waiting -- pending or queued --, the claimed map chunks)."""
    waiting = int(
        conn.execute(
            select(func.count()).where(
                Chunk.run_id == run_id,
                Chunk.stage == Stage.MAP.value,
                Chunk.state.in_([ChunkState.PENDING.value, ChunkState.QUEUED.value]),
            )
        ).scalar_one()
    )
    running = [
        Running(int(i), int(x), int(r or 0), int(s or 0))
        for i, x, r, s in conn.execute(
            select(Chunk.id, Chunk.idx, Chunk.rows_read, Chunk.split_state).where(
                Chunk.run_id == run_id,
                Chunk.stage == Stage.MAP.value,
                Chunk.state == ChunkState.CLAIMED.value,
            )
        )
    ]
    return waiting, running


def request_split(conn: Connection, run_id: int, chunk_id: int, actor: str) -> bool:
    """Ask the owner of a claimed map chunk to split it at its next beat."""
    moved = conn.execute(
        update(Chunk)
        .where(
            Chunk.id == chunk_id,
            Chunk.run_id == run_id,
            Chunk.state == ChunkState.CLAIMED.value,
            Chunk.split_state == SPLIT_NONE,
        )
        .values(split_state=SPLIT_REQUESTED)
    ).rowcount
    if moved == 1:
        add_event(conn, run_id, "split_requested", chunk_id=chunk_id, actor=actor)
    return moved == 1


def decline_split(conn: Connection, c: Claim, reason: str) -> None:
    """The owner will not split (too little left): the master stops asking this claim.
    Fenced: a claim no longer ours changes nothing (and raises ChunkLost)."""
    moved = conn.execute(
        update(Chunk)
        .where(still_ours(c), Chunk.split_state == SPLIT_REQUESTED)
        .values(split_state=SPLIT_DECLINED)
    ).rowcount
    if moved != 1:
        _check_ours(conn, c)
        return
    add_event(
        conn,
        c.run.id,
        "split_declined",
        chunk_id=c.chunk_id,
        actor=c.owner,
        attempt=c.attempt,
        detail=reason[:4000],
    )


def split(conn: Connection, c: Claim, end: bytes, cut: bytes) -> int:
    """Cut our claimed chunk ``[start, end)`` at ``cut``: it keeps ``[start, cut)``,
    and ``[cut, end)`` becomes a new pending map chunk; returns its index.

    One transaction, fenced by owner and attempt: a split racing a takeover (or
    any claim no longer ours) raises ChunkLost and changes nothing. The caller
    must have read nothing at or beyond ``cut`` (it chooses ``cut`` beyond its
    position and stops there), and ``cut`` must lie after its checkpoint.
    """
    moved = conn.execute(
        update(Chunk)
        .where(still_ours(c), Chunk.end_key == end, Chunk.stage == Stage.MAP.value)
        .values(
            end_key=cut,
            split_state=SPLIT_NONE,
            lease_expires_at=db_now_plus(c.run.params.lease_seconds),
        )
    ).rowcount
    if moved != 1:
        raise ChunkLost(f"{c.label}: cannot split, claim lost")
    # the run row serialises concurrent splits of one run (each takes the next index)
    conn.execute(update(Run).where(Run.id == c.run.id).values(chunks_total=Run.chunks_total + 1))
    last = conn.execute(
        select(func.max(Chunk.idx)).where(Chunk.run_id == c.run.id, Chunk.stage == Stage.MAP.value)
    ).scalar_one()
    idx = int(last) + 1
    conn.execute(
        insert(Chunk).values(
            run_id=c.run.id,
            stage=Stage.MAP.value,
            idx=idx,
            start_key=cut,
            end_key=end,
            state=ChunkState.PENDING.value,
            attempt=0,
            rows_read=0,
            rows_malformed=0,
        )
    )
    add_event(
        conn,
        c.run.id,
        "split",
        chunk_id=c.chunk_id,
        actor=c.owner,
        attempt=c.attempt,
        detail=f"map[{c.idx}] cut at {cut!r}: the tail is map[{idx}]",
    )
    return idx


def _check_ours(conn: Connection, c: Claim) -> None:
    """Raise ChunkLost unless the claim is still ours."""
    row = conn.execute(select(Chunk.id).where(and_(still_ours(c)))).first()
    if row is None:
        raise ChunkLost(f"{c.label}: claim lost")
