"""A map chunk, segment by segment: checkpoints inside the chunk, mid-chunk
resume, and the owner's side of a run-time split.

The scan starts at the claim's checkpoint (where the last committed segment
ended; the chunk's start the first time) and folds batch after batch. Every
``checkpoint_rows`` rows or ``checkpoint_seconds`` (run parameters), at a batch
boundary, the fold so far becomes a segment: its partials are written under
keys naming (bucket, chunk, seq, the segment's key span), then it is committed in
MySQL, fenced, with the key the scan reached (``common/db/segments.py``), and
the fold starts afresh. So a taker after a kill re-reads at most one interval,
and the chunk's memory is bounded by one interval too. The last segment is
committed with the chunk's completion (by the processor).

A chunk that turns out much larger than planned (``TRIM_FACTOR`` times
``chunk_rows`` folded, and still ``split_min_rows`` to go) hands the rest of its
range off at once as a new chunk, cut at the next row: no probe of the middle
needed. A split request arrives with a lease beat. The owner then chooses a cut beyond
every key it has read (:func:`nightfold.worker.split.choose_cut`), shrinks its
chunk to it in one fenced transaction that also records the tail as a new
chunk, and stops its scan at the cut. Too little left: it declines, and the
master does not ask this claim again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Engine

from nightfold.common.db import segments as segment_repo
from nightfold.common.db.chunks import Claim
from nightfold.common.db.engine import db_errors, retrying
from nightfold.common.db.segments import SPLITS_OFF, SegmentRef, SegmentSpec
from nightfold.common.errors import ChunkLost, ServiceUnavailable
from nightfold.common.jobs.base import Job, MapOutput, fold_rows
from nightfold.common.keys import KeyRange, span_id
from nightfold.common.store.base import Store
from nightfold.worker.split import choose_cut, store_probe

log = logging.getLogger(__name__)

TRIM_FACTOR = 1.5
"""A chunk that has folded this many times ``chunk_rows`` hands the rest of its range
off as a new chunk (when at least half a chunk, and ``split_min_rows``, are left): no
planned work unit grows past about 2x the plan, whatever the plan misjudged."""
PROBE_BATCH = 5000
"""Keys per round trip of the trim's look ahead."""
MAX_KEY = 512
"""Longest key the chunks table holds (``VARBINARY(512)``): a checkpoint or a cut
needs a key that fits, so a longer one is skipped (the next batch's may fit)."""


class Lease(Protocol):
    """What the map needs of :class:`~nightfold.worker.heartbeat.LeaseKeeper`."""

    split_requested: bool

    def tick(self, rows_read: int, last_key: bytes | None, *, force: bool = False) -> None: ...


class ChunkIO(Protocol):
    """The chunk's records in MySQL, as the map and the reduce use them."""

    def commit(self, seg: SegmentSpec) -> None:
        """Commit a segment (fenced); ChunkLost when the claim is no longer ours."""

    def split(self, end: bytes, cut: bytes) -> int | None:
        """Cut the chunk at ``cut`` (fenced): the new chunk's index, None when the
        database failed (try again at a later beat); ChunkLost when not ours."""

    def decline_split(self, reason: str) -> None: ...

    def committed(self) -> set[SegmentRef] | None:
        """The run's committed map segments (for a reduce); None: count every
        partial row (only where nothing can have written one twice: the bench)."""


WriteSegment = Callable[[MapOutput[Any], int, bytes], None]
"""``write(out, seq, span)``: put the partials of ``out`` as segment ``seq`` of the
claim, holding the rows of the key span named ``span``."""


class SegmentedMap:
    """One attempt at a map chunk, from its checkpoint to its (possibly cut) end."""

    def __init__(
        self,
        claim: Claim,
        store: Store,
        job: Job[Any],
        lease: Lease,
        io: ChunkIO,
        write: WriteSegment,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.claim = claim
        self.store = store
        self.job = job
        self.lease = lease
        self.io = io
        self.write = write
        self.clock = clock
        self.params = claim.run.params
        self.end = claim.key_range.end
        self.resume = claim.resume_from
        self.seq = claim.next_seq
        self.committed_rows = claim.rows_committed
        self.out: MapOutput[Any] = MapOutput()
        self.last: bytes | None = None
        self.since = clock()
        self.read = 0
        """Rows this attempt read (all its segments)."""
        self.malformed = 0
        self.splits: list[int] = []
        """Indexes of the chunks this attempt split off."""
        self.trimmed = False

    def run(self) -> tuple[SegmentSpec, int, int]:
        """Fold up to the end; returns the last segment (written, not committed:
        it commits with the completion) and the rows (read, malformed) of this attempt."""
        size = self.params.scan_batch
        if not self.end or self.resume < self.end:
            scan = self.store.scan(
                self.job.raw_table, KeyRange(self.resume, self.end), batch_size=size, ahead=True
            )
            with contextlib.closing(scan):  # type: ignore[type-var]
                rows = itertools.takewhile(lambda row: self._before_end(row[0]), scan)
                fold_rows(self.job, rows, self.out, size, self._after_batch)
        last = SegmentSpec(
            seq=self.seq,
            resume_key=self.end or self.resume,
            span=span_id(self.resume, self.end),
            rows_read=self.out.rows_read,
            rows_malformed=self.out.rows_malformed,
            rejects=tuple(self.out.rejects),
        )
        self.write(self.out, self.seq, last.span)
        return last, self.read + self.out.rows_read, self.malformed + self.out.rows_malformed

    def _before_end(self, key: bytes) -> bool:
        return not self.end or key < self.end

    def _after_batch(self, last: bytes) -> None:
        self.last = last
        self.lease.tick(self.committed_rows + self.out.rows_read, last)
        if self.lease.split_requested:
            self.lease.split_requested = False
            self._split()
        elif self._oversized():
            self._trim()
        if self._due():
            self._checkpoint()

    def _oversized(self) -> bool:
        if self.trimmed or self.params.split_min_rows >= SPLITS_OFF:
            return False
        rows = self.committed_rows + self.out.rows_read
        return rows >= TRIM_FACTOR * self.params.chunk_rows

    def _trim(self) -> None:
        """Much larger than planned: keep what was read, hand the rest off (if enough
        is left to be worth a chunk: one keys-only look ahead of at most ``chunk_rows``
        keys)."""
        assert self.last is not None
        self.trimmed = True  # once per attempt: the tail gets its own chance
        # the rest must be worth a chunk: half a planned one at least (so no chunk is
        # left much over 2x the plan, and no tiny one drags the others' median down)
        want = min(
            self.params.chunk_rows, max(self.params.split_min_rows, self.params.chunk_rows // 2)
        )
        ahead = store_probe(self.store, self.job.raw_table, self.end, batch=PROBE_BATCH)(
            self.last + b"\x00", want
        )
        if len(ahead) < want or len(ahead[0]) > MAX_KEY:
            return
        idx = self.io.split(self.end, ahead[0])
        if idx is None:
            return
        log.info(
            "%s: %d rows, over %.1f x chunk_rows: the rest from %r handed off to map[%d]",
            self.claim.label,
            self.committed_rows + self.out.rows_read,
            TRIM_FACTOR,
            ahead[0],
            idx,
        )
        self.end = ahead[0]
        self.splits.append(idx)

    def _due(self) -> bool:
        rows = self.out.rows_read
        if rows >= self.params.checkpoint_rows:
            return True
        return rows > 0 and self.clock() - self.since >= self.params.checkpoint_seconds

    def _checkpoint(self) -> None:
        assert self.last is not None
        resume = self.last + b"\x00"
        if len(resume) > MAX_KEY:
            return
        out = self.out
        seg = SegmentSpec(
            self.seq,
            resume,
            span_id(self.resume, resume),
            out.rows_read,
            out.rows_malformed,
            rejects=tuple(out.rejects),
        )
        self.write(out, self.seq, seg.span)
        self.io.commit(seg)
        self.committed_rows += seg.rows_read
        self.read += seg.rows_read
        self.malformed += seg.rows_malformed
        self.seq += 1
        self.resume = resume
        # the same objects, emptied: the fold holds ``out`` (and a job may hold its parts)
        out.partials.clear()
        del out.rejects[:]
        out.rows_read = out.rows_malformed = 0
        self.since = self.clock()

    def _split(self) -> None:
        start = self.last + b"\x00" if self.last is not None else self.resume
        look = store_probe(self.store, self.job.raw_table, self.end)

        def probe(key: bytes, n: int) -> list[bytes]:
            # the probes can take seconds on a busy store: the lease must not run out
            self.lease.tick(self.committed_rows + self.out.rows_read, self.last)
            return look(key, n)

        cut = choose_cut(start, self.end, probe, self.params.split_min_rows)
        self.lease.split_requested = False  # a beat meanwhile saw the same request
        if cut is None or len(cut.key) > MAX_KEY:
            self.io.decline_split(f"less than 2 x {self.params.split_min_rows} rows left")
            return
        idx = self.io.split(self.end, cut.key)
        if idx is None:
            return
        log.info(
            "%s: split at %r (about %.0f rows kept, %.0f to map[%d], %d probes)",
            self.claim.label,
            cut.key,
            cut.head_rows,
            cut.tail_rows,
            idx,
            cut.probes,
        )
        self.end = cut.key
        self.splits.append(idx)


class DbChunkIO:
    """:class:`ChunkIO` over the database, for one claim."""

    def __init__(self, engine: Engine, url: str, claim: Claim, deadline: float) -> None:
        self.engine = engine
        self.url = url
        self.claim = claim
        self.deadline = deadline

    def commit(self, seg: SegmentSpec) -> None:
        def once() -> None:
            with self.engine.begin() as conn:
                segment_repo.commit(conn, self.claim, seg)

        # a database restart is ridden out (the commit is idempotent for this attempt)
        retrying(self.url, once, deadline=self.deadline, what=f"{self.claim.label}: checkpoint")

    def split(self, end: bytes, cut: bytes) -> int | None:
        try:
            with db_errors(self.url), self.engine.begin() as conn:
                return segment_repo.split(conn, self.claim, end, cut)
        except ChunkLost:
            raise
        except (ServiceUnavailable, Exception) as exc:  # e.g. a deadlock: not now
            log.warning("%s: split not recorded: %s", self.claim.label, exc)
            return None

    def decline_split(self, reason: str) -> None:
        try:
            with db_errors(self.url), self.engine.begin() as conn:
                segment_repo.decline_split(conn, self.claim, reason)
        except ChunkLost:
            raise
        except Exception as exc:
            log.warning("%s: split decline not recorded: %s", self.claim.label, exc)

    def committed(self) -> set[SegmentRef]:
        def once() -> set[SegmentRef]:
            with self.engine.connect() as conn:
                return segment_repo.committed(conn, self.claim.run.id)

        return retrying(self.url, once, deadline=self.deadline, what=f"{self.claim.label}: read")
