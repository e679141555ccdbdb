"""What the master tells the outside world, as the worker does (see
:mod:`nightfold.worker.hooks`): the loop calls :class:`MasterHooks` at each event
and never mentions metrics or log lines. :class:`MasterMetrics` keeps the
Prometheus series (including the run gauges, which cost queries and so are
refreshed at most every two seconds), :class:`MasterLog` the log lines.
"""

from __future__ import annotations

import time
from logging import getLogger

from sqlalchemy import Engine

from nightfold.common import metrics
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db.runs import RunInfo
from nightfold.common.errors import ServiceUnavailable
from nightfold.common.hooks import FanOutMixin
from nightfold.common.logs import fields
from nightfold.common.states import ChunkState, RunState, Stage

log = getLogger("nightfold.master.loop")
"""The logger the master's lines have always come from."""


class MasterHooks:
    """Every event of a master, as no-op methods: override the ones you need."""

    def created(self, me: str, run: RunInfo) -> None: ...
    def acquired(self, me: str, run: RunInfo, from_dead: str | None) -> None: ...
    def already_final(self, me: str, run: RunInfo) -> None: ...
    def waiting_for_previous(self, me: str, job: str, day: str) -> None: ...
    def release_failed(self, me: str, run: RunInfo, exc: ServiceUnavailable) -> None: ...
    def ticked(self, me: str, run: RunInfo) -> None:
        """Once per tick, with the run as just read (heartbeat recorded)."""

    def cancelled(self, me: str, run: RunInfo) -> None: ...
    def lease_expired(self, me: str, run: RunInfo, stage: Stage, chunk_id: int) -> None: ...
    def worker_dead(
        self, me: str, run: RunInfo, stage: Stage, chunk_id: int, dead_seconds: float
    ) -> None: ...
    def failed(self, me: str, run: RunInfo, stage: str, reason: str) -> None: ...
    def split_requested(self, me: str, run: RunInfo, chunk_id: int, idx: int, rows: int) -> None:
        """No map chunk waits: the owner of map chunk ``idx`` (``rows`` read) is asked to split."""

    def stage_done(
        self, me: str, run: RunInfo, stage: Stage, nxt: RunState, rows: int, malformed: int
    ) -> None:
        """``rows`` and ``malformed`` are the run's totals when ``nxt`` is SUCCEEDED."""

    def published(self, me: str, run: RunInfo, sent: int) -> None: ...
    def finished(self, me: str, run: RunInfo, seconds: float) -> None:
        """The run as it ended after ``drive`` drove it for ``seconds``."""


class MasterFanOut(FanOutMixin, MasterHooks):
    """Several hooks as one, called in order."""


class MasterMetrics(MasterHooks):
    """The master's Prometheus series."""

    def __init__(self, engine: Engine, *, every: float = 2.0) -> None:
        self.engine = engine
        self.every = every
        self._next_observe = 0.0
        self._observed_state: RunState | None = None

    def ticked(self, me: str, run: RunInfo) -> None:
        metrics.MASTER_HEARTBEAT.labels(run.job, run.day.isoformat()).set_to_current_time()
        self._observe(run)

    def lease_expired(self, me: str, run: RunInfo, stage: Stage, chunk_id: int) -> None:
        metrics.LEASE_EXPIRIES.labels(run.job).inc()

    def worker_dead(
        self, me: str, run: RunInfo, stage: Stage, chunk_id: int, dead_seconds: float
    ) -> None:
        metrics.WORKER_DEAD_TAKEOVERS.labels(run.job).inc()

    def published(self, me: str, run: RunInfo, sent: int) -> None:
        metrics.HINTS_PUBLISHED.labels(run.job).inc(sent)

    def finished(self, me: str, run: RunInfo, seconds: float) -> None:
        metrics.RUN_DURATION.labels(run.job, run.day.isoformat()).set(seconds)
        if run.state is RunState.SUCCEEDED:
            metrics.LAST_SUCCESS.labels(run.job).set_to_current_time()
        self._observe(run)

    def _observe(self, run: RunInfo, *, force: bool = False) -> None:
        """Refresh the run gauges (at most every ``every`` seconds: they cost queries)."""
        now = time.monotonic()
        if not force and now < self._next_observe and run.state is self._observed_state:
            return
        self._next_observe, self._observed_state = now + self.every, run.state
        job, day = run.job, run.day.isoformat()
        for state in RunState:
            metrics.RUN_STATE.labels(job, day, state.value).set(1 if state is run.state else 0)
        with self.engine.connect() as conn:
            counts = chunk_repo.counts_by_stage(conn, run.id)
            rows = chunk_repo.rows_done(conn, run.id)
        in_flight = 0
        for stage in Stage:
            for cstate in ChunkState:
                n = counts.get((stage.value, cstate.value), 0)
                metrics.RUN_CHUNKS.labels(job, day, stage.value, cstate.value).set(n)
                if cstate in (ChunkState.QUEUED, ChunkState.CLAIMED):
                    in_flight += n
        metrics.RUN_IN_FLIGHT.labels(job, day).set(in_flight)
        metrics.RUN_ROWS.labels(job, day).set(rows)


class MasterLog(MasterHooks):
    """The master's log lines (texts that tests and the chaos harness grep for)."""

    def created(self, me: str, run: RunInfo) -> None:
        log.info("run %s created", run.label, extra=fields(run=run.label, master=me))

    def acquired(self, me: str, run: RunInfo, from_dead: str | None) -> None:
        log.info(
            "run %s: master %s took ownership%s",
            run.label,
            me,
            f" from dead {from_dead}" if from_dead else "",
            extra=fields(run=run.label, master=me),
        )

    def already_final(self, me: str, run: RunInfo) -> None:
        log.info(
            "run %s is already %s",
            run.label,
            run.state.value,
            extra=fields(run=run.label, master=me),
        )

    def waiting_for_previous(self, me: str, job: str, day: str) -> None:
        log.info(
            "%s %s: waiting for the previous generation's workers to let go of "
            "their chunks (at most one lease)",
            job,
            day,
            extra=fields(master=me),
        )

    def release_failed(self, me: str, run: RunInfo, exc: ServiceUnavailable) -> None:
        log.warning(
            "run %s: could not release ownership: %s",
            run.label,
            exc,
            extra=fields(run=run.label, master=me),
        )

    def cancelled(self, me: str, run: RunInfo) -> None:
        log.warning(
            "run %s cancelled on request", run.label, extra=fields(run=run.label, master=me)
        )

    def lease_expired(self, me: str, run: RunInfo, stage: Stage, chunk_id: int) -> None:
        log.warning(
            "run %s: chunk %d lease expired, taken back",
            run.label,
            chunk_id,
            extra=fields(run=run.label, stage=stage, chunk=chunk_id, master=me),
        )

    def worker_dead(
        self, me: str, run: RunInfo, stage: Stage, chunk_id: int, dead_seconds: float
    ) -> None:
        log.warning(
            "run %s: chunk %d taken back: its worker was not seen for %gs",
            run.label,
            chunk_id,
            dead_seconds,
            extra=fields(run=run.label, stage=stage, chunk=chunk_id, master=me),
        )

    def split_requested(self, me: str, run: RunInfo, chunk_id: int, idx: int, rows: int) -> None:
        log.info(
            "run %s: no map chunk waiting, map[%d] (%d rows read) asked to split",
            run.label,
            idx,
            rows,
            extra=fields(run=run.label, stage=Stage.MAP, chunk=chunk_id, master=me),
        )

    def failed(self, me: str, run: RunInfo, stage: str, reason: str) -> None:
        log.error(
            "run %s failed: %s",
            run.label,
            reason,
            extra=fields(run=run.label, stage=stage, master=me),
        )

    def stage_done(
        self, me: str, run: RunInfo, stage: Stage, nxt: RunState, rows: int, malformed: int
    ) -> None:
        if nxt is RunState.SUCCEEDED:
            log.info(
                "run %s succeeded: %d rows, %d malformed",
                run.label,
                rows,
                malformed,
                extra=fields(run=run.label, stage=stage, master=me),
            )
        else:
            log.info(
                "run %s: %s done, %s",
                run.label,
                stage.value,
                nxt.value,
                extra=fields(run=run.label, stage=stage, master=me),
            )
