"""The consumer loop: one I/O thread taking deliveries, ``concurrency`` processing
threads handing them to the :class:`~nightfold.worker.processor.ChunkProcessor`.

The calling thread owns the transport's connection (AMQP heartbeats and acks
must flow from it while chunks run for minutes), so processing threads never
touch it: they report back through the done queue, which the loop flushes.
A delivery holds one of ``concurrency`` slots from the moment it is taken
until :meth:`ConsumerLoop._settle` -- the one place a slot is given back and
finished chunks counted (under the lock: several processing threads finish at
once). Its ack is queued as soon as the claim is decided (:meth:`_ack_now`), not
when the chunk ends: the claim lives in MySQL, and a delivery left unacknowledged
for a long chunk's whole duration would outlive RabbitMQ's ``consumer_timeout``
(30 min by default: the broker then closes the channel). A worker killed between
the ack and the claim's commit loses only a hint, which the master's outbox
publishes again (``republish_seconds``).

Stopping (``stopping`` set by a signal, ``max_chunks`` or a fatal refusal):
no new deliveries; current chunks get ``shutdown_grace_seconds`` to finish,
then ``hard_stop`` makes them release at their next beat.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from nightfold.common.config import Settings
from nightfold.common.errors import AccessRefused, ServiceUnavailable
from nightfold.common.logs import fields
from nightfold.common.outage import Outage
from nightfold.common.store.base import Store
from nightfold.common.transport import Consumer, Delivery
from nightfold.worker.hooks import Hooks
from nightfold.worker.liveness import CurrentChunks
from nightfold.worker.processor import ChunkProcessor, Outcome, Processed

log = logging.getLogger("nightfold.worker.runner")

_STOP = object()

FULL_POLL_SECONDS = 0.01
"""How long the I/O thread waits on the transport while every slot is busy
before it looks again for finished chunks: their acks (and so, with a prefetch
of ``concurrency``, the broker's next hint) wait for that look. At 0.1 s a
worker sat idle 50 ms per chunk on average, 2.5% of a 2-second chunk (measured
by ``bench/fleet.py``); 10 ms costs the I/O thread ~100 cheap wake-ups a second."""


class ConsumerLoop:
    """Runs deliveries through a processor until stopped."""

    def __init__(
        self,
        settings: Settings,
        processor: ChunkProcessor,
        consumer_factory: Callable[[], Consumer],
        store_factory: Callable[[], Store],
        hooks: Hooks,
        *,
        concurrency: int = 1,
        max_chunks: int | None = None,
        current: CurrentChunks | None = None,
        unavailable_pause: float = 1.0,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.me = processor.me
        self.consumer_factory = consumer_factory
        self.store_factory = store_factory
        self.hooks = hooks
        self.concurrency = concurrency
        self.max_chunks = max_chunks
        self.current = current if current is not None else CurrentChunks()
        self.unavailable_pause = unavailable_pause
        self.stopping = threading.Event()
        self.hard_stop = processor.hard_stop
        self.fatal: ServiceUnavailable | None = None
        """Why the loop gave up (refused, or an outage past the deadline), if it did."""
        self.chunks_done = 0
        self.outcomes: dict[Outcome, int] = {}
        """How many deliveries ended each way (for tests and the stop line)."""
        self._lock = threading.Lock()
        self._busy = 0
        self._work: queue.Queue[Any] = queue.Queue()
        self._done: queue.Queue[tuple[Delivery, bool]] = queue.Queue()

    def request_stop(self) -> None:
        self.stopping.set()

    # -- the I/O thread -------------------------------------------------
    def run(self) -> None:
        """Until stopped and idle; raises :attr:`fatal` if the loop gave up."""
        threads = [
            threading.Thread(target=self._process_loop, name=f"nightfold-exec-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        consumer: Consumer | None = None
        outage = Outage(
            self.settings.connect_deadline_seconds, log, f"worker {self.me}", fields(worker=self.me)
        )
        stop_deadline: float | None = None
        try:
            while True:
                now = time.monotonic()
                if self.stopping.is_set() and stop_deadline is None:
                    stop_deadline = now + self.settings.shutdown_grace_seconds
                    if consumer is not None:
                        consumer.stop_consuming()
                if stop_deadline is not None:
                    if self._idle():
                        break
                    if now >= stop_deadline:
                        self.hard_stop.set()
                    if consumer is None:  # stopping: no reconnect just to flush acks
                        time.sleep(0.1)
                        continue
                try:
                    if consumer is None:
                        consumer = self.consumer_factory()
                    self._flush(consumer)
                    if self.stopping.is_set() or not self._has_room():
                        consumer.pump(FULL_POLL_SECONDS)
                        continue
                    delivery = consumer.next_delivery(0.5)
                    outage.recovered()
                    if delivery is not None:
                        self._dispatch(consumer, delivery)
                except ServiceUnavailable as exc:
                    if consumer is not None:
                        consumer.close()
                        consumer = None
                    try:
                        time.sleep(outage.failed(exc))
                    except ServiceUnavailable as fatal:
                        self._give_up(fatal)
            if self.fatal is not None:
                raise self.fatal
        finally:
            self.stopping.set()
            for _ in threads:
                self._work.put(_STOP)
            if consumer is not None:
                self._flush(consumer)
                consumer.close()

    def _has_room(self) -> bool:
        # only this thread adds work, so a free slot seen here stays free
        with self._lock:
            return self._busy < self.concurrency

    def _idle(self) -> bool:
        with self._lock:
            return self._busy == 0

    def _dispatch(self, consumer: Consumer, delivery: Delivery) -> None:
        """Hand a delivery to a processing thread, or dead-letter it if malformed."""
        with self._lock:
            self._busy += 1
        if delivery.extra.get("redelivered"):
            self.hooks.redelivered(self.me, delivery)
        if delivery.hint is None:
            self.hooks.dead_lettered(self.me, delivery)
            self._settle(delivery, None, reject=True)
            self._flush(consumer)
            return
        self._work.put(delivery)

    def _settle(self, delivery: Delivery, processed: Processed | None, *, reject: bool) -> None:
        """The one place a delivery lets go of its slot: queue its ack (or
        rejection), count a finished chunk, stop after ``max_chunks``.

        The ack is queued before the slot is freed: the loop exits once idle,
        and an ack queued after its last flush would be lost (the hint redelivered).
        A delivery acknowledged at its claim is not acknowledged twice (a second
        ack of one delivery tag is a channel error)."""
        if not delivery.extra.get("acked"):
            self._done.put((delivery, reject))
        with self._lock:
            self._busy -= 1
            if processed is not None:
                self.outcomes[processed.outcome] = self.outcomes.get(processed.outcome, 0) + 1
                if processed.outcome is Outcome.DONE:
                    self.chunks_done += 1
            reached = self.max_chunks is not None and self.chunks_done >= self.max_chunks
        if reached:
            self.request_stop()

    def _ack_now(self, delivery: Delivery) -> None:
        """Queue the delivery's ack now (its claim is decided); :meth:`_settle` then
        only frees the slot."""
        if not delivery.extra.get("acked"):
            delivery.extra["acked"] = True
            self._done.put((delivery, False))

    def _flush(self, consumer: Consumer) -> None:
        while True:
            try:
                delivery, reject = self._done.get_nowait()
            except queue.Empty:
                return
            if reject:
                consumer.reject(delivery)
            else:
                consumer.ack(delivery)

    def _give_up(self, exc: ServiceUnavailable) -> None:
        """A refusal or an outage past the deadline: stop as on SIGTERM (current
        chunks finish or are released within the grace period), then exit with it."""
        with self._lock:
            first = self.fatal is None
            if first:
                self.fatal = exc
        if first:
            self.hooks.giving_up(self.me, exc)
        self.request_stop()

    # -- processing threads ---------------------------------------------
    def _process_loop(self) -> None:
        store: Store | None = None
        self.current.set(None)
        try:
            while True:
                item = self._work.get()
                if item is _STOP:
                    return
                delivery: Delivery = item
                assert delivery.hint is not None
                processed: Processed | None = None
                try:
                    if store is None:
                        store = self.store_factory()
                    processed = self.processor.process(
                        delivery.hint, store, functools.partial(self._ack_now, delivery)
                    )
                except AccessRefused as exc:  # opening the store
                    processed = Processed(Outcome.REFUSED, error=exc)
                except ServiceUnavailable as exc:
                    processed = Processed(Outcome.UNAVAILABLE, error=exc)
                except Exception as exc:
                    self.hooks.unexpected(self.me, delivery, exc)
                try:
                    if processed is not None and processed.error is not None:
                        if processed.outcome is Outcome.REFUSED:
                            self._give_up(processed.error)
                        else:
                            self.hooks.unavailable(self.me, processed.error)
                            if store is not None:
                                store.close()
                                store = None
                            time.sleep(self.unavailable_pause)
                finally:
                    self._settle(delivery, processed, reject=False)
        finally:
            self.current.forget()
            if store is not None:
                store.close()
