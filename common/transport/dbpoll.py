"""The embedded transport: no broker; workers poll the database for queued chunks.

The master's "publish" is a no-op (the queued row is the hint). Workers look
for queued chunks of live runs and try the same conditional claim as with
RabbitMQ, so the database stays the one truth. Polls back off while idle.
The poll itself (a query, with the database's errors mapped) is the caller's
``queued`` function, so this module does not depend on the database layer.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

from nightfold.common.transport.base import Delivery, QueuedPoll
from nightfold.common.transport.messages import Hint


class DbPollPublisher:
    def publish(self, hints: Sequence[Hint]) -> None:
        return None

    def backlog(self) -> int | None:
        return None

    def close(self) -> None:
        return None


class DbPollConsumer:
    """Hands out queued chunks found in the database, never one already in hand."""

    def __init__(self, queued: QueuedPoll, *, max_backoff: float = 1.0) -> None:
        self.queued = queued
        self.max_backoff = max_backoff
        self._backoff = 0.02
        self._in_hand: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._rng = random.Random()

    def next_delivery(self, timeout: float) -> Delivery | None:
        if self._stopped:
            time.sleep(timeout)
            return None
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                exclude = list(self._in_hand)
            found = self.queued(8, exclude)
            if found:
                self._backoff = 0.02
                # spread concurrent pollers over the candidates to avoid lost races
                pick = self._rng.choice(found)
                with self._lock:
                    self._in_hand.add(pick.chunk_id)
                hint = Hint(
                    run_id=pick.run_id, chunk_id=pick.chunk_id, stage=pick.stage, idx=pick.idx
                )
                return Delivery(hint=hint, tag=pick.chunk_id)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(self._backoff, left))
            self._backoff = min(self._backoff * 2, self.max_backoff)

    def ack(self, delivery: Delivery) -> None:
        with self._lock:
            self._in_hand.discard(delivery.tag)

    def reject(self, delivery: Delivery) -> None:
        self.ack(delivery)

    def stop_consuming(self) -> None:
        self._stopped = True

    def pump(self, timeout: float) -> None:
        time.sleep(timeout)

    def close(self) -> None:
        return None
