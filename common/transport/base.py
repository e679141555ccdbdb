"""The transport seam: how hints travel from the master to workers.

As small as dramatiq's broker: the master ``publish``es hints; a worker's
consumer hands out deliveries and takes acks. RabbitMQ (``rabbitmq.py``) in
production; the embedded ``dbpoll.py`` has no broker at all and finds queued
chunks in the database with the same claim query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nightfold.common.transport.messages import Hint


@dataclass
class Delivery:
    """One hint handed to a worker; ``tag`` is the backend's own handle."""

    hint: Hint | None
    tag: Any = None
    body: bytes = b""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Queued(Protocol):
    """A queued chunk of a live run, as the embedded transport's poll finds it
    (``common/db/chunks.py``'s ``Claimable`` is one)."""

    @property
    def chunk_id(self) -> int: ...
    @property
    def run_id(self) -> int: ...
    @property
    def stage(self) -> str: ...
    @property
    def idx(self) -> int: ...


QueuedPoll = Callable[[int, Sequence[int]], Sequence[Queued]]
"""``queued(limit, exclude)``: up to ``limit`` queued chunks, oldest first, none of
the chunk ids in ``exclude``; raises ServiceUnavailable when the database is down.
What the ``db://`` consumer polls, supplied by whoever owns the database."""


class Publisher(Protocol):
    def publish(self, hints: Sequence[Hint]) -> None:
        """Send hints durably (confirmed by the broker) or raise ServiceUnavailable."""

    def backlog(self) -> int | None:
        """Hints ready in the broker's queue, or None where there is no broker."""
        ...

    def close(self) -> None: ...


class Consumer(Protocol):
    """Used by one worker process. ``next_delivery`` and ``close`` run on the
    consumer's own (I/O) thread; ``ack`` and ``reject`` may be called from any
    thread."""

    def next_delivery(self, timeout: float) -> Delivery | None:
        """Wait up to ``timeout`` seconds for a delivery, keeping I/O alive."""
        ...

    def ack(self, delivery: Delivery) -> None: ...

    def reject(self, delivery: Delivery) -> None:
        """Drop an unparseable message to the dead-letter queue."""

    def pump(self, timeout: float) -> None:
        """Keep I/O (heartbeats, queued acks) flowing without taking deliveries."""

    def stop_consuming(self) -> None:
        """Take no new deliveries (shutdown); pending acks still go out."""

    def close(self) -> None: ...
