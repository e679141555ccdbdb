"""Group commit for a worker process's claims and completions.

A worker process runs ``concurrency`` processing threads, and each chunk needs
a claim and a completion: short transactions whose cost (statements, round
trips, a commit) is mostly fixed. Threads that arrive while one of them is in
the database wait for it, then the next one in line takes every waiting
request into ONE transaction (:func:`~nightfold.common.db.chunks.claim_many`,
:func:`~nightfold.common.db.chunks.complete_many`). A lone request goes at once,
so an idle worker waits for nobody; under load the batches grow by themselves,
which is when the database needs them (no timer, no added latency).

Each chunk keeps its own fate: a claim is granted or not (a stale hint), a
completion is done or fenced out (:class:`ChunkLost`), exactly as alone; a
batch that fails (the database went away) fails every request in it, and each
thread retries its own under the outage policy, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import segments as segment_repo
from nightfold.common.db.chunks import Claim, Completion, KnownRuns
from nightfold.common.db.engine import retrying
from nightfold.common.errors import ChunkLost
from nightfold.common.states import ChunkState

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

MAX_BATCH = 64
"""Requests per transaction at most (the statements stay small)."""


@dataclass
class _Slot(Generic[R, T]):
    request: R
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    """Asked to run the next batch."""
    done: bool = False
    result: T | None = None
    error: BaseException | None = None


class GroupCommit(Generic[R, T]):
    """Runs requests from many threads through ``run_batch``, several at a time.

    ``run_batch`` gets the requests of one batch and returns one outcome per
    request, in order: a value, or an exception to raise in that request's
    thread. If it raises, every request of the batch raises it.

    One batch runs at a time; its leader is a waiting thread, which afterwards
    wakes only the threads of its batch and hands the lead to the first one
    still waiting (one wake-up per request: with hundreds of threads a shared
    ``notify_all`` would wake all of them for every batch).
    """

    def __init__(
        self,
        run_batch: Callable[[list[R]], Sequence[T | BaseException]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Slot[R, T]] = []
        self._leading = False
        self.batches = 0
        self.requests = 0

    def submit(self, request: R) -> T:
        slot: _Slot[R, T] = _Slot(request)
        with self._lock:
            self._pending.append(slot)
            if not self._leading:
                self._leading = slot.lead = True
        while not slot.done:
            if slot.lead:
                slot.lead = False
                self._run_next(slot)
            else:
                slot.wake.wait()
                slot.wake.clear()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _run_next(self, me: _Slot[R, T]) -> None:
        """Run the next batch, then hand the lead on (or give it up)."""
        with self._lock:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
        failure: BaseException | None = None
        outcomes: Sequence[T | BaseException] = ()
        try:
            outcomes = self._run_batch([s.request for s in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(outcomes)} outcomes")
        except BaseException as exc:  # handed to every thread of the batch, raised there
            failure = exc
        for i, s in enumerate(batch):
            if failure is not None:
                s.error = failure
            elif isinstance(outcomes[i], BaseException):
                s.error = outcomes[i]  # type: ignore[assignment]
            else:
                s.result = outcomes[i]  # type: ignore[assignment]
            s.done = True
            if s is not me:
                s.wake.set()
        with self._lock:
            self.batches += 1
            self.requests += len(batch)
            if self._pending:
                nxt = self._pending[0]
                nxt.lead = True
                nxt.wake.set()
            else:
                self._leading = False


class ChunkBatches:
    """The claims and completions of one worker process (``me``), group-committed.

    A COMMIT that fails leaves its transaction in doubt: the database may have made it
    durable before the connection broke (a MariaDB restart mid-COMMIT does that). A
    claim that did land but was retried would find its chunk no longer queued, drop
    it, and leave it held by this process until its lease ran out; a completion that
    did land and was retried would find its chunk no longer claimed. So a failed
    COMMIT is settled before the batch ends: the rows are read back (retried through
    the outage, up to ``deadline`` seconds) under the claims' own tokens, which only
    this transaction can have written. What landed is returned as landed; the rest
    raise the COMMIT's error, and their threads retry them as before. The batch still
    holds the lead while it settles, so no other transaction of this process can
    claim the same chunks meanwhile (a duplicate hint is never settled into a
    second thread).
    """

    def __init__(
        self,
        engine: Engine,
        me: str,
        max_batch: int = MAX_BATCH,
        *,
        deadline: float = 30.0,
    ) -> None:
        self.engine = engine
        self.me = me
        self.deadline = deadline
        """How long a failed COMMIT's settling read is retried through an outage."""
        self.known_runs = KnownRuns()
        """The runs this process claimed chunks of: a claim reads its run's row once."""
        self.claims: GroupCommit[int, Claim | None] = GroupCommit(self._claim, max_batch)
        self.completions: GroupCommit[Completion, None] = GroupCommit(self._complete, max_batch)
        self.settled = 0
        """Transactions whose COMMIT failed and that were settled by reading back."""

    def claim(self, chunk_id: int) -> Claim | None:
        """Claim one queued chunk (None: a stale hint, or someone else's)."""
        return self.claims.submit(chunk_id)

    def complete(self, done: Completion) -> None:
        """Mark one claim done; raises ChunkLost when it was fenced out."""
        self.completions.submit(done)

    def commit(self, trans: RootTransaction) -> None:
        """COMMIT (a seam: tests make one fail after it landed)."""
        trans.commit()

    def _transaction(
        self,
        body: Callable[[Connection], T],
        claims: Callable[[T], Sequence[Claim]],
        state: ChunkState,
    ) -> tuple[T, set[int] | None]:
        """Run ``body`` in one transaction; returns its result and, when its COMMIT
        failed, the ids of ``claims(result)`` found in ``state`` under their tokens (the
        part that landed; None when the COMMIT went through)."""
        with self.engine.connect() as conn:
            trans = conn.begin()
            result = body(conn)  # an error here: nothing committed, raised as is
            try:
                self.commit(trans)
            except Exception as exc:
                ours = claims(result)
                log.warning(
                    "worker %s: COMMIT of %d chunk(s) failed (%s): reading back which landed",
                    self.me,
                    len(ours),
                    type(exc).__name__,
                )
                landed = self._settle(ours, state, exc)
                self.settled += 1
                if ours and not landed:  # it did not land: each thread retries its own
                    raise
                log.warning("worker %s: the COMMIT had landed", self.me)
                return result, landed
        return result, None

    def _settle(self, claims: Sequence[Claim], state: ChunkState, cause: Exception) -> set[int]:
        def read() -> set[int]:
            with self.engine.connect() as conn:
                return chunk_repo.held(conn, claims, state)

        url = self.engine.url.render_as_string(hide_password=True)
        try:
            return retrying(url, read, deadline=self.deadline, what=f"worker {self.me}: settle")
        except Exception:
            raise cause from None  # still in doubt: as before, each thread retries its own

    def _claim(self, ids: list[int]) -> list[Claim | None]:
        got, landed = self._transaction(  # alone or many: 3 statements once the run is known
            lambda conn: chunk_repo.claim_many(conn, ids, self.me, self.known_runs),
            lambda got: list(got.values()),
            ChunkState.CLAIMED,
        )
        if landed is not None:  # it landed; a claim taken back since is no longer ours
            got = {i: c for i, c in got.items() if i in landed}
        out: list[Claim | None] = []
        for chunk_id in ids:  # the same chunk asked twice (a duplicate hint): one gets it
            out.append(got.pop(chunk_id, None))
        return out

    def _complete(self, batch: list[Completion]) -> list[BaseException | None]:
        def body(conn: Connection) -> list[BaseException | None]:
            if len(batch) == 1:
                d = batch[0]
                try:
                    chunk_repo.complete(conn, d.claim, d.rows_read, d.rows_malformed, d.rejects)
                except ChunkLost as exc:
                    return [exc]
                lost: set[int] = set()
            else:
                lost = chunk_repo.complete_many(conn, batch)
            # map chunks: their last segments, recorded with the completion (fenced by it)
            segment_repo.record_last(conn, [d for d in batch if d.claim.chunk_id not in lost])
            return [
                ChunkLost(f"{d.claim.label}: cannot complete, claim lost")
                if d.claim.chunk_id in lost
                else None
                for d in batch
            ]

        outcomes, _ = self._transaction(  # landed: all of it (a done chunk stays done)
            body,
            lambda outcomes: [d.claim for d, o in zip(batch, outcomes, strict=True) if o is None],
            ChunkState.DONE,
        )
        return outcomes
