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
from nightfold.common.db.engine import db_errors
from nightfold.common.errors import ServiceUnavailable


class Released(Exception):
    """Stop working on the chunk and give it back (shutdown deadline or cancel)."""


class LeaseKeeper:
    """Beats for one claim at most every ``interval`` seconds; raises on cancel
    or shutdown, and ChunkLost (from the repository) when fenced out. A beat that
    finds a split requested sets :attr:`split_requested` (the map clears it)."""

    def __init__(self, engine: Engine, url: str, claim: Claim, hard_stop: threading.Event) -> None:
        self.engine = engine
        self.url = url
        self.claim = claim
        self.hard_stop = hard_stop
        # the beat is also how the owner hears that the master wants its chunk split
        # (so within lease / 4: a chunk worth splitting runs for longer than that)
        self.interval = max(0.5, claim.run.params.lease_seconds / 4)
        self.split_requested = False
        self._next = time.monotonic() + self.interval
        self._last_ok = time.monotonic()

    def tick(self, rows_read: int, last_key: bytes | None, *, force: bool = False) -> None:
        """Beat if one is due (always with ``force``).

        ``force`` is the fence before a write that must not outlive the claim (a
        reduce's summary rows): it beats now and lets a database error through,
        so nothing is written unless the claim and a live run were just confirmed.
        """
        if self.hard_stop.is_set():
            raise Released("worker shutting down: grace period over")
        now = time.monotonic()
        if now < self._next and not force:
            return
        self._next = now + self.interval
        try:
            with db_errors(self.url), self.engine.begin() as conn:
                beat = chunk_repo.beat(conn, self.claim, rows_read, last_key)
        except ServiceUnavailable:
            if force:
                raise
            # A database blip: keep working and beat again soon, while the lease
            # we hold still has a safe margin; past it, give the chunk up.
            if now - self._last_ok > 0.75 * self.claim.run.params.lease_seconds:
                raise
            self._next = now + 1.0
            return
        self._last_ok = now
        self.split_requested = self.split_requested or beat.split
        if beat.stop:
            raise Released("run cancelled or no longer running")
