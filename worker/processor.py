"""One delivery's chunk, start to end: claim, execute, then complete, fail or release.

Every way out of a chunk maps to exactly one :class:`Outcome`, returned rather
than raised, so the consumer loop decides what a result means for the process
(count it, reopen the store, give up) in one place, and a test can drive each
exit path in process. Events go to :class:`~nightfold.worker.hooks.Hooks`;
nothing here knows about metrics or log lines.

| exit                                   | chunk row              | outcome       |
|----------------------------------------|------------------------|---------------|
| executed and completed                 | done                   | DONE          |
| hint stale (not queued, run not live)  | untouched              | STALE         |
| job error, StoreRejected, other error  | failed (pending/dead)  | FAILED        |
| Released (cancel, grace period over)   | released, uncounted    | RELEASED      |
| ChunkLost (fenced out: taken over)     | someone else's         | LOST          |
| ServiceUnavailable (outage)            | released, uncounted    | UNAVAILABLE   |
| AccessRefused (credentials, grants)    | released, uncounted    | REFUSED       |
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine

from nightfold.common.config import Settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import segments as segment_repo
from nightfold.common.db.chunks import Claim, Completion
from nightfold.common.db.engine import retrying
from nightfold.common.errors import AccessRefused, ChunkLost, NightfoldError, ServiceUnavailable
from nightfold.common.jobs import get_job
from nightfold.common.states import ChunkState
from nightfold.common.store.base import Store
from nightfold.common.transport import Hint
from nightfold.worker.batching import ChunkBatches
from nightfold.worker.checkpoint import DbChunkIO
from nightfold.worker.executor import Result, execute
from nightfold.worker.heartbeat import LeaseKeeper, Released
from nightfold.worker.hooks import Hooks

log = logging.getLogger(__name__)
T = TypeVar("T")


class Outcome(enum.Enum):
    DONE = "done"
    STALE = "stale"
    FAILED = "failed"
    RELEASED = "released"
    LOST = "lost"
    UNAVAILABLE = "unavailable"
    REFUSED = "refused"


@dataclass(frozen=True)
class Processed:
    """What became of one hint; ``error`` is set for UNAVAILABLE and REFUSED."""

    outcome: Outcome
    chunk_id: int | None = None
    state: ChunkState | None = None
    """The chunk's new state after a FAILED attempt (PENDING or DEAD; None if lost)."""
    error: ServiceUnavailable | None = None


class ChunkProcessor:
    """Claims and works chunks for worker ``me``; safe to share between threads
    (each call gets its own store, which is not thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        me: str,
        hooks: Hooks,
        *,
        hard_stop: threading.Event | None = None,
        on_claim: Callable[[int | None], None] = lambda _chunk: None,
    ) -> None:
        """``hard_stop`` set: running chunks stop at their next beat and are
        released (the shutdown grace period is over). ``on_claim`` hears the
        chunk this thread now holds (None when it lets go), for the liveness beat."""
        self.settings = settings
        self.engine = engine
        self.me = me
        self.hooks = hooks
        self.hard_stop = hard_stop if hard_stop is not None else threading.Event()
        self.on_claim = on_claim
        self.batches = ChunkBatches(engine, me, deadline=settings.connect_deadline_seconds)
        """Claims and completions of this process's threads, group-committed."""

    def process(
        self, hint: Hint, store: Store, claimed: Callable[[], None] = lambda: None
    ) -> Processed:
        """Claim and work the chunk of ``hint``; ``claimed`` is called as soon as the
        claim is decided (won or stale), before any work: the delivery can be
        acknowledged then, since from there on the claim lives in MySQL."""
        try:
            return self._process(hint, store, claimed)
        except AccessRefused as exc:
            return Processed(Outcome.REFUSED, hint.chunk_id, error=exc)
        except ServiceUnavailable as exc:
            return Processed(Outcome.UNAVAILABLE, hint.chunk_id, error=exc)
        finally:
            self.on_claim(None)

    def _process(self, hint: Hint, store: Store, claimed: Callable[[], None]) -> Processed:
        def claim_it() -> Claim | None:
            return self.batches.claim(hint.chunk_id)

        claim = self._db(claim_it, f"claim chunk {hint.chunk_id}")
        claimed()
        if claim is None:
            self.hooks.stale(self.me, hint)
            return Processed(Outcome.STALE, hint.chunk_id)
        self.on_claim(claim.chunk_id)
        self.hooks.claimed(self.me, claim)
        started = time.monotonic()
        try:
            return self._attempt(claim, store)
        finally:
            self.hooks.finished(self.me, claim, time.monotonic() - started)

    def _attempt(self, claim: Claim, store: Store) -> Processed:
        job = get_job(claim.run.job)  # unknown here: a bug, left to the lease (as before)
        lease = LeaseKeeper(self.engine, self.settings.database_url, claim, self.hard_stop)
        io = DbChunkIO(
            self.engine, self.settings.database_url, claim, self.settings.connect_deadline_seconds
        )
        started = time.monotonic()
        try:
            result = execute(claim, store, job, lease, io)
            self._complete(claim, result)
        except Released as exc:
            self._try_release(claim, str(exc))
            self.hooks.released(self.me, claim, str(exc))
            return Processed(Outcome.RELEASED, claim.chunk_id)
        except ChunkLost as exc:
            self.hooks.lost(self.me, claim, exc)
            return Processed(Outcome.LOST, claim.chunk_id)
        except ServiceUnavailable:
            self._try_release(claim, "service unavailable")
            raise
        except NightfoldError as exc:
            return self._fail(claim, exc)
        except Exception as exc:  # a job error (poison row): this attempt fails
            self.hooks.job_error(self.me, claim, exc)
            return self._fail(claim, exc)
        self.hooks.done(self.me, claim, result, time.monotonic() - started)
        return Processed(Outcome.DONE, claim.chunk_id, ChunkState.DONE)

    def _complete(self, claim: Claim, result: Result) -> None:
        def complete() -> None:
            # a map's last segment is recorded with the completion, and its counters
            # are the chunk's totals (its committed segments' and this attempt's)
            if result.last is not None:
                done = segment_repo.completion(
                    claim, result.last, result.rows_read, result.rows_malformed
                )
            else:
                done = Completion(claim, result.rows_read, result.rows_malformed, result.rejects)
            self.batches.complete(done)

        self._db(complete, f"complete {claim.label}")

    def _fail(self, claim: Claim, exc: Exception) -> Processed:
        error = f"{type(exc).__name__}: {exc}"

        def fail() -> ChunkState | None:
            with self.engine.begin() as conn:
                return chunk_repo.fail(conn, claim, error)

        state = self._db(fail, f"record failure of {claim.label}")
        self.hooks.failed(self.me, claim, state, error)
        return Processed(Outcome.FAILED, claim.chunk_id, state)

    def _try_release(self, claim: Claim, reason: str) -> None:
        """Best effort: a chunk not released comes back when its lease runs out."""
        try:
            with self.engine.begin() as conn:
                chunk_repo.release(conn, claim, reason)
        except Exception:
            log.debug("could not release %s", claim.label, exc_info=True)

    def _db(self, fn: Callable[[], T], what: str) -> T:
        """A short transaction that must survive a database restart."""
        return retrying(
            self.settings.database_url,
            fn,
            deadline=self.settings.connect_deadline_seconds,
            what=f"worker {self.me}: {what}",
        )
