"""Lease heartbeats, taken between scan batches at a bounded rate.

Inline rather than on a timer thread: a chunk makes progress batch by batch,
and a batch takes far less than a lease, so a beat between batches both
extends the lease and records honest progress (rows read, last key).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db.chunks import Claim


class Released(Exception):
    """Stop working on the chunk and give it back (shutdown deadline or cancel)."""


class LeaseKeeper:
    """Beats for one claim at most every ``interval`` seconds; raises on cancel
    or shutdown, and ChunkLost (from the repository) when fenced out."""

    def __init__(self, engine: Engine, claim: Claim, hard_stop: threading.Event) -> None:
        self.engine = engine
        self.claim = claim
        self.hard_stop = hard_stop
        self.interval = max(0.5, claim.run.params.lease_seconds / 4)
        self._next = time.monotonic() + self.interval

    def tick(self, rows_read: int, last_key: bytes | None) -> None:
        if self.hard_stop.is_set():
            raise Released("worker shutting down: grace period over")
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        with self.engine.begin() as conn:
            cancelled = chunk_repo.heartbeat(conn, self.claim, rows_read, last_key)
        if cancelled:
            raise Released("run cancelled")
