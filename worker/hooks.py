"""What the worker tells the outside world: one small interface, many listeners.

The processor and the consumer loop call a :class:`Hooks` at each event (named
after the ``run_events`` kinds where one exists: claimed, done, failed, dead,
released) and never mention metrics or log lines themselves -- dramatiq's
middleware, reduced to notifications. :class:`MetricsHooks` keeps the
Prometheus series, :class:`LogHooks` the log lines that operators, the chaos
harness and the pipeline tests read ("claimed", "done", "released", "claim
lost", "giving up": keep those texts). A test passes its own recorder.
"""

from __future__ import annotations

import logging

from nightfold.common import metrics
from nightfold.common.db.chunks import Claim
from nightfold.common.errors import ServiceUnavailable
from nightfold.common.hooks import FanOutMixin
from nightfold.common.logs import claim_fields, fields
from nightfold.common.states import ChunkState, Stage
from nightfold.common.transport import Delivery, Hint
from nightfold.worker.executor import Result

log = logging.getLogger("nightfold.worker.runner")
"""The logger the worker's lines have always come from (log configuration names it)."""


class Hooks:
    """Every event of a worker, as no-op methods: override the ones you need."""

    # -- the worker process
    def started(self, worker: str, concurrency: int) -> None: ...
    def stopped(self, worker: str, chunks_done: int) -> None: ...
    def giving_up(self, worker: str, exc: ServiceUnavailable) -> None: ...
    def unavailable(self, worker: str, exc: ServiceUnavailable) -> None:
        """A service failed while processing a delivery (the chunk was given back)."""

    # -- deliveries
    def redelivered(self, worker: str, delivery: Delivery) -> None: ...
    def dead_lettered(self, worker: str, delivery: Delivery) -> None: ...
    def stale(self, worker: str, hint: Hint) -> None:
        """The hint's chunk is not claimable (someone else won, or it moved on)."""

    def unexpected(self, worker: str, delivery: Delivery, exc: BaseException) -> None:
        """A bug: an exception no exit path accounts for."""

    # -- one claimed chunk
    def claimed(self, worker: str, claim: Claim) -> None: ...
    def finished(self, worker: str, claim: Claim, seconds: float) -> None:
        """After every claimed chunk, whatever its outcome."""

    def done(self, worker: str, claim: Claim, result: Result, seconds: float) -> None: ...
    def job_error(self, worker: str, claim: Claim, exc: BaseException) -> None:
        """The job raised (a poison row): the attempt is failed next."""

    def failed(self, worker: str, claim: Claim, state: ChunkState | None, error: str) -> None:
        """A failed attempt recorded: ``state`` PENDING (retried), DEAD, or None (lost)."""

    def released(self, worker: str, claim: Claim, reason: str) -> None: ...
    def lost(self, worker: str, claim: Claim, exc: Exception) -> None: ...


class FanOut(FanOutMixin, Hooks):
    """Several hooks as one, called in order."""


class MetricsHooks(Hooks):
    """The worker's Prometheus series."""

    def redelivered(self, worker: str, delivery: Delivery) -> None:
        metrics.MESSAGES_REDELIVERED.inc()

    def dead_lettered(self, worker: str, delivery: Delivery) -> None:
        metrics.MESSAGES_DEAD_LETTERED.inc()

    def claimed(self, worker: str, claim: Claim) -> None:
        metrics.CHUNKS_CLAIMED.labels(*_labels(claim)).inc()
        metrics.WORKER_BUSY.inc()

    def finished(self, worker: str, claim: Claim, seconds: float) -> None:
        metrics.WORKER_BUSY.dec()
        metrics.CHUNK_SECONDS.labels(*_labels(claim)).observe(seconds)

    def done(self, worker: str, claim: Claim, result: Result, seconds: float) -> None:
        metrics.CHUNKS_COMPLETED.labels(*_labels(claim)).inc()
        if claim.stage is Stage.MAP:
            metrics.ROWS_SCANNED.labels(claim.run.job).inc(result.rows_read)
            metrics.ROWS_MALFORMED.labels(claim.run.job).inc(result.rows_malformed)

    def failed(self, worker: str, claim: Claim, state: ChunkState | None, error: str) -> None:
        if state is ChunkState.DEAD:
            metrics.CHUNKS_DEAD.labels(*_labels(claim)).inc()
        elif state is ChunkState.PENDING:
            metrics.CHUNKS_RETRIED.labels(*_labels(claim)).inc()

    def released(self, worker: str, claim: Claim, reason: str) -> None:
        metrics.CHUNKS_RELEASED.labels(*_labels(claim)).inc()

    def lost(self, worker: str, claim: Claim, exc: Exception) -> None:
        metrics.CHUNKS_LOST.labels(*_labels(claim)).inc()


def _labels(claim: Claim) -> tuple[str, str]:
    return claim.run.job, claim.stage.value


class LogHooks(Hooks):
    """The worker's log lines (texts that tests and the chaos harness grep for)."""

    def started(self, worker: str, concurrency: int) -> None:
        log.info(
            "worker %s started (concurrency %d)", worker, concurrency, extra=fields(worker=worker)
        )

    def stopped(self, worker: str, chunks_done: int) -> None:
        log.info(
            "worker %s stopped after %d chunks", worker, chunks_done, extra=fields(worker=worker)
        )

    def giving_up(self, worker: str, exc: ServiceUnavailable) -> None:
        log.error("worker %s: giving up: %s", worker, exc, extra=fields(worker=worker))

    def unavailable(self, worker: str, exc: ServiceUnavailable) -> None:
        log.warning("worker %s: %s", worker, exc, extra=fields(worker=worker))

    def dead_lettered(self, worker: str, delivery: Delivery) -> None:
        log.warning(
            "worker %s: dead-lettering malformed message: %s",
            worker,
            delivery.error,
            extra=fields(worker=worker),
        )

    def stale(self, worker: str, hint: Hint) -> None:
        log.debug(
            "worker %s: stale hint for chunk %d, dropped",
            worker,
            hint.chunk_id,
            extra=fields(stage=hint.stage, chunk=hint.chunk_id, worker=worker),
        )

    def unexpected(self, worker: str, delivery: Delivery, exc: BaseException) -> None:
        hint = delivery.hint
        log.error(
            "worker %s: unexpected error on %s",
            worker,
            hint,
            exc_info=exc,
            extra=fields(
                chunk=hint.chunk_id if hint else None,
                stage=hint.stage if hint else None,
                worker=worker,
            ),
        )

    def claimed(self, worker: str, claim: Claim) -> None:
        log.info("worker %s: claimed %s", worker, claim.label, extra=claim_fields(claim, worker))

    def done(self, worker: str, claim: Claim, result: Result, seconds: float) -> None:
        log.info(
            "worker %s: done %s: %d rows in %.2fs",
            worker,
            claim.label,
            result.rows_read,
            seconds,
            extra=claim_fields(claim, worker),
        )

    def job_error(self, worker: str, claim: Claim, exc: BaseException) -> None:
        log.error(
            "worker %s: %s failed",
            worker,
            claim.label,
            exc_info=exc,
            extra=claim_fields(claim, worker),
        )

    def failed(self, worker: str, claim: Claim, state: ChunkState | None, error: str) -> None:
        if state is not None:
            log.warning(
                "worker %s: %s failed, now %s: %s",
                worker,
                claim.label,
                state.value,
                error,
                extra=claim_fields(claim, worker),
            )

    def released(self, worker: str, claim: Claim, reason: str) -> None:
        log.info(
            "worker %s: released %s: %s",
            worker,
            claim.label,
            reason,
            extra=claim_fields(claim, worker),
        )

    def lost(self, worker: str, claim: Claim, exc: Exception) -> None:
        log.warning("worker %s: %s", worker, exc, extra=claim_fields(claim, worker))
