"""The worker process: a consumer (I/O) thread and ``concurrency`` processing threads.

The main thread owns the transport's connection: it takes deliveries and keeps
AMQP heartbeats and acks flowing, while processing threads claim, execute and
complete chunks. Shutdown (dramatiq's shape): the first SIGTERM stops taking
work and lets current chunks finish within the grace period, after which they
are released; a second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy import Engine

from nightfold.common import metrics
from nightfold.common.config import Settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import workers as worker_repo
from nightfold.common.db.chunks import Claim
from nightfold.common.db.engine import retrying
from nightfold.common.errors import (
    AccessRefused,
    ChunkLost,
    NightfoldError,
    ServiceUnavailable,
)
from nightfold.common.identity import new_identity
from nightfold.common.jobs import Job, get_job
from nightfold.common.logs import claim_fields, fields
from nightfold.common.outage import Outage
from nightfold.common.states import ChunkState, Stage
from nightfold.common.store.base import Store
from nightfold.common.transport import Consumer, Delivery
from nightfold.worker.executor import execute
from nightfold.worker.heartbeat import LeaseKeeper, Released
from nightfold.worker.liveness import CurrentChunks, Liveness

log = logging.getLogger(__name__)

_STOP = object()
T = TypeVar("T")


class Worker:
    """One worker process."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        consumer_factory: Callable[[], Consumer],
        store_factory: Callable[[], Store],
        *,
        concurrency: int = 1,
        max_chunks: int | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.consumer_factory = consumer_factory
        self.store_factory = store_factory
        self.concurrency = concurrency
        self.max_chunks = max_chunks
        self.me = new_identity()
        self.stopping = threading.Event()
        self.hard_stop = threading.Event()
        self._work: queue.Queue[Any] = queue.Queue()
        self._in_flight = threading.Semaphore(concurrency)
        self._done: queue.Queue[Delivery] = queue.Queue()
        self._current = CurrentChunks()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.chunks_done = 0
        self._signals = 0
        self.fatal: ServiceUnavailable | None = None
        """Why the worker gave up (refused, or an outage past the deadline), if it did."""

    # -- signals -------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning(
                "worker %s: second signal, exiting now", self.me, extra=fields(worker=self.me)
            )
            os._exit(1)
        log.info(
            "worker %s: %s received, finishing current chunks",
            self.me,
            signal.Signals(signum).name,
            extra=fields(worker=self.me),
        )
        self.request_stop()

    def request_stop(self) -> None:
        self.stopping.set()

    # -- main loop -----------------------------------------------------
    def run(self) -> int:
        with self.engine.begin() as conn:
            worker_repo.register(conn, self.me, socket.gethostname(), os.getpid())
        liveness = Liveness(
            self.engine, self.me, self._current, self.settings.worker_heartbeat_seconds
        )
        liveness.start()
        log.info(
            "worker %s started (concurrency %d)",
            self.me,
            self.concurrency,
            extra=fields(worker=self.me),
        )
        threads = [
            threading.Thread(target=self._process_loop, name=f"nightfold-exec-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        consumer: Consumer | None = None
        outage = Outage(
            self.settings.connect_deadline_seconds,
            log,
            f"worker {self.me}",
            fields(worker=self.me),
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
                    self._flush_acks(consumer)
                    if self.stopping.is_set() or not self._in_flight.acquire(blocking=False):
                        consumer.pump(0.1)
                        continue
                    try:
                        delivery = consumer.next_delivery(0.5)
                    except ServiceUnavailable:
                        # give the slot back, or the loop only pumps a dead consumer forever
                        self._in_flight.release()
                        raise
                    outage.recovered()
                    if delivery is None:
                        self._in_flight.release()
                        continue
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
            return 0
        finally:
            self.stopping.set()
            for _ in threads:
                self._work.put(_STOP)
            if consumer is not None:
                self._flush_acks(consumer)
                consumer.close()
            liveness.stop()
            try:
                with self.engine.begin() as conn:
                    worker_repo.stopped(conn, self.me)
            except Exception:
                log.debug("could not record worker stop", exc_info=True)
            log.info(
                "worker %s stopped after %d chunks",
                self.me,
                self.chunks_done,
                extra=fields(worker=self.me),
            )

    def _dispatch(self, consumer: Consumer, delivery: Delivery) -> None:
        """Hand a delivery to a processing thread, or dead-letter it if malformed."""
        if delivery.extra.get("redelivered"):
            metrics.MESSAGES_REDELIVERED.inc()
        if delivery.hint is None:
            metrics.MESSAGES_DEAD_LETTERED.inc()
            log.warning(
                "worker %s: dead-lettering malformed message: %s",
                self.me,
                delivery.error,
                extra=fields(worker=self.me),
            )
            consumer.reject(delivery)
            self._in_flight.release()
            return
        with self._busy_lock:
            self._busy += 1
        self._work.put(delivery)

    def _give_up(self, exc: ServiceUnavailable) -> None:
        """A refusal or an outage past the deadline: stop as on SIGTERM (current
        chunks finish or are released within the grace period), then exit with it."""
        if self.fatal is None:
            self.fatal = exc
            log.error("worker %s: giving up: %s", self.me, exc, extra=fields(worker=self.me))
        self.request_stop()

    def _idle(self) -> bool:
        with self._busy_lock:
            return self._busy == 0

    def _flush_acks(self, consumer: Consumer) -> None:
        while True:
            try:
                delivery = self._done.get_nowait()
            except queue.Empty:
                return
            consumer.ack(delivery)

    # -- processing threads -------------------------------------------
    def _process_loop(self) -> None:
        store: Store | None = None
        self._current.set(None)
        try:
            while True:
                item = self._work.get()
                if item is _STOP:
                    return
                delivery: Delivery = item
                try:
                    if store is None:
                        store = self.store_factory()
                    self.handle(delivery, store)
                except AccessRefused as exc:
                    self._give_up(exc)
                except ServiceUnavailable as exc:
                    log.warning("worker %s: %s", self.me, exc, extra=fields(worker=self.me))
                    if store is not None:
                        store.close()
                        store = None
                    time.sleep(1)
                except Exception:
                    log.exception(
                        "worker %s: unexpected error on %s",
                        self.me,
                        delivery.hint,
                        extra=fields(
                            chunk=delivery.hint.chunk_id if delivery.hint else None,
                            stage=delivery.hint.stage if delivery.hint else None,
                            worker=self.me,
                        ),
                    )
                finally:
                    self._current.set(None)
                    self._done.put(delivery)
                    self._in_flight.release()
                    with self._busy_lock:
                        self._busy -= 1
                    if self.max_chunks is not None and self.chunks_done >= self.max_chunks:
                        self.request_stop()
        finally:
            self._current.forget()
            if store is not None:
                store.close()

    def handle(self, delivery: Delivery, store: Store) -> None:
        hint = delivery.hint
        assert hint is not None

        def claim_it() -> Claim | None:
            with self.engine.begin() as conn:
                return chunk_repo.claim(conn, hint.chunk_id, self.me)

        claim = self._db(claim_it, f"claim chunk {hint.chunk_id}")
        if claim is None:
            log.debug(
                "worker %s: stale hint for chunk %d, dropped",
                self.me,
                hint.chunk_id,
                extra=fields(stage=hint.stage, chunk=hint.chunk_id, worker=self.me),
            )
            return
        self._current.set(claim.chunk_id)
        log.info("worker %s: claimed %s", self.me, claim.label, extra=claim_fields(claim, self.me))
        self._execute(claim, store)

    def _execute(self, claim: Claim, store: Store) -> None:
        job = get_job(claim.run.job)
        lease = LeaseKeeper(self.engine, self.settings.database_url, claim, self.hard_stop)
        labels = (claim.run.job, claim.stage.value)
        metrics.CHUNKS_CLAIMED.labels(*labels).inc()
        metrics.WORKER_BUSY.inc()
        started = time.monotonic()
        try:
            self._attempt(claim, store, job, lease, labels)
        finally:
            metrics.WORKER_BUSY.dec()
            metrics.CHUNK_SECONDS.labels(*labels).observe(time.monotonic() - started)

    def _attempt(
        self, claim: Claim, store: Store, job: Job[Any], lease: LeaseKeeper, labels: tuple[str, str]
    ) -> None:
        started = time.monotonic()
        try:
            result = execute(claim, store, job, lease)

            def complete() -> None:
                with self.engine.begin() as conn:
                    chunk_repo.complete(
                        conn, claim, result.rows_read, result.rows_malformed, result.rejects
                    )

            self._db(complete, f"complete {claim.label}")
        except Released as exc:
            self._try_release(claim, str(exc))
            metrics.CHUNKS_RELEASED.labels(*labels).inc()
            log.info(
                "worker %s: released %s: %s",
                self.me,
                claim.label,
                exc,
                extra=claim_fields(claim, self.me),
            )
            return
        except ChunkLost as exc:
            metrics.CHUNKS_LOST.labels(*labels).inc()
            log.warning("worker %s: %s", self.me, exc, extra=claim_fields(claim, self.me))
            return
        except ServiceUnavailable:
            self._try_release(claim, "service unavailable")
            raise
        except NightfoldError as exc:
            self._fail(claim, f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # a job error (poison row): this attempt fails
            log.exception(
                "worker %s: %s failed", self.me, claim.label, extra=claim_fields(claim, self.me)
            )
            self._fail(claim, f"{type(exc).__name__}: {exc}")
            return
        self.chunks_done += 1
        metrics.CHUNKS_COMPLETED.labels(*labels).inc()
        if claim.stage is Stage.MAP:
            metrics.ROWS_SCANNED.labels(labels[0]).inc(result.rows_read)
            metrics.ROWS_MALFORMED.labels(labels[0]).inc(result.rows_malformed)
        log.info(
            "worker %s: done %s: %d rows in %.2fs",
            self.me,
            claim.label,
            result.rows_read,
            time.monotonic() - started,
            extra=claim_fields(claim, self.me),
        )

    def _db(self, fn: Callable[[], T], what: str) -> T:
        """A short transaction that must survive a database restart."""
        return retrying(
            self.settings.database_url,
            fn,
            deadline=self.settings.connect_deadline_seconds,
            what=f"worker {self.me}: {what}",
        )

    def _fail(self, claim: Claim, error: str) -> None:
        def fail() -> ChunkState | None:
            with self.engine.begin() as conn:
                return chunk_repo.fail(conn, claim, error)

        state = self._db(fail, f"record failure of {claim.label}")
        labels = (claim.run.job, claim.stage.value)
        if state is ChunkState.DEAD:
            metrics.CHUNKS_DEAD.labels(*labels).inc()
        elif state is ChunkState.PENDING:
            metrics.CHUNKS_RETRIED.labels(*labels).inc()
        if state is not None:
            log.warning(
                "worker %s: %s failed, now %s: %s",
                self.me,
                claim.label,
                state.value,
                error,
                extra=claim_fields(claim, self.me),
            )

    def _try_release(self, claim: Claim, reason: str) -> None:
        try:
            with self.engine.begin() as conn:
                chunk_repo.release(conn, claim, reason)
        except Exception:
            log.debug(
                "could not release %s",
                claim.label,
                exc_info=True,
                extra=claim_fields(claim, self.me),
            )
