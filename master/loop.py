"""The master: a single-threaded loop of idempotent steps over one run.

acquire -> plan (once) -> [heartbeat, cancel?, reclaim, dead?, dispatch,
stage done?]* -> finish. Every step reads its state from the database, so a
master killed at any instant and restarted continues where the rows say.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from nightfold.common.config import Settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.engine import db_errors, retrying
from nightfold.common.db.runs import RunInfo
from nightfold.common.errors import RunConflict, ServiceUnavailable
from nightfold.common.identity import is_local_and_dead, new_identity
from nightfold.common.jobs.base import Job
from nightfold.common.logs import fields
from nightfold.common.outage import Outage
from nightfold.common.states import (
    RUN_STATE_OF_STAGE,
    TERMINAL_RUN_STATES,
    WORKING_RUN_STATES,
    ChunkState,
    RunState,
    Stage,
)
from nightfold.common.store.base import Store
from nightfold.common.transport import Publisher
from nightfold.master.dispatcher import dispatch
from nightfold.master.hooks import MasterFanOut, MasterHooks, MasterLog, MasterMetrics
from nightfold.master.planner import compute_plan, record_plan
from nightfold.master.rebalance import request_split

log = logging.getLogger(__name__)

STAGE_OF_STATE = {state: stage for stage, state in RUN_STATE_OF_STAGE.items()}
NEXT_STATE = {
    RunState.MAPPING: RunState.REDUCING,
    RunState.REDUCING: RunState.SUCCEEDED,  # or COMBINING, when the plan has combine items
    RunState.COMBINING: RunState.SUCCEEDED,
}


@dataclass
class Outcome:
    run: RunInfo
    state: RunState
    error: str | None
    seconds: float


class Master:
    """Drives one run to a terminal state."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: Store,
        publisher: Publisher,
        job: Job[object],
        *,
        on_tick: Callable[[RunInfo], None] | None = None,
        open_store: Callable[[], Store] | None = None,
        hooks: Sequence[MasterHooks] = (),
    ) -> None:
        """``open_store`` opens more connections to the store, for planning's
        parallel sampling scan (without it planning samples on ``store`` alone).
        ``hooks`` are heard besides the metrics and the log lines."""
        self.settings = settings
        self.engine = engine
        self.store = store
        self.open_store = open_store
        self.publisher = publisher
        self.job = job
        self.me = new_identity()
        self.on_tick = on_tick
        self.hooks = MasterFanOut([MasterMetrics(engine), MasterLog(), *hooks])
        self._healthy_since = time.monotonic()
        """Since when this master has ticked without a database outage: dead-worker
        takeover waits ``worker_dead_seconds`` after it (workers could not beat either)."""

    # -- run selection ---------------------------------------------------
    def open_run(self, day: dt.date, *, rerun: bool) -> RunInfo | None:
        """The run to drive: the latest generation of (job, day), or a new one.

        None while a ``rerun`` must wait: the previous generation (finished)
        still has chunks held under live leases, whose workers could write its
        summaries after the new generation's (they stop at their next beat).
        """
        params = self.settings.run_params()
        with self.engine.begin() as conn:
            latest = run_repo.latest_run(conn, self.job.name, day)
            if latest is not None and not rerun:
                return latest
            if latest is not None and latest.state not in TERMINAL_RUN_STATES:
                # two live generations of a day would both write its summary rows
                raise RunConflict(
                    f"run {latest.label} is still {latest.state.value}: resume it without "
                    f"--rerun, or cancel it first (nightfold cancel --day {day.isoformat()})"
                )
            if latest is not None and not run_repo.lock_finished(conn, latest.id):
                # an operator's retry reopened it since we read it (we now hold its row)
                raise RunConflict(
                    f"run {latest.label} was reopened by a retry: resume it without --rerun"
                )
            if latest is not None and chunk_repo.held_claims(conn, latest.id):
                return None  # its workers may still write: wait for them to let go
            generation = latest.generation + 1 if latest else 1
            created = run_repo.create_run(conn, self.job.name, day, generation, params, self.me)
        if created is None:  # another master created it in between: resume that one
            with self.engine.connect() as conn:
                again = run_repo.latest_run(conn, self.job.name, day)
            assert again is not None
            return again
        self.hooks.created(self.me, created)
        return created

    def acquire(self, run: RunInfo) -> None:
        force = run.owner is not None and is_local_and_dead(run.owner, self.me)
        with self.engine.begin() as conn:
            run_repo.acquire(conn, run.id, self.me, self.settings.master_stale_seconds, force=force)
        self.hooks.acquired(self.me, run, run.owner if force else None)

    # -- the loop --------------------------------------------------------
    def drive(self, day: dt.date, *, rerun: bool = False) -> Outcome:
        started = time.monotonic()
        url, deadline = self.settings.database_url, self.settings.connect_deadline_seconds
        run = self._open_run_waiting(day, rerun=rerun)
        if run.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED):
            self.hooks.already_final(self.me, run)
            return Outcome(run, run.state, run.error, 0.0)
        retrying(url, lambda: self.acquire(run), deadline=deadline, what=f"run {run.label}")
        try:
            state = self._loop(run)
        finally:
            self._release(run)
        final = retrying(url, lambda: self._read(run.id), deadline=deadline, what=run.label)
        seconds = time.monotonic() - started
        self.hooks.finished(self.me, final, seconds)
        return Outcome(final, state, final.error, seconds)

    def _open_run_waiting(self, day: dt.date, *, rerun: bool) -> RunInfo:
        url, deadline = self.settings.database_url, self.settings.connect_deadline_seconds
        waited = False
        while True:
            run = retrying(
                url,
                lambda: self.open_run(day, rerun=rerun),
                deadline=deadline,
                what=f"master for {day}",
            )
            if run is not None:
                return run
            if not waited:
                self.hooks.waiting_for_previous(self.me, self.job.name, day.isoformat())
                waited = True
            time.sleep(1.0)

    def _read(self, run_id: int) -> RunInfo:
        with self.engine.connect() as conn:
            info = run_repo.get_run(conn, run_id)
        assert info is not None
        return info

    def _release(self, run: RunInfo) -> None:
        """Give up ownership so a restarted master need not wait (best effort)."""
        try:
            with db_errors(self.settings.database_url), self.engine.begin() as conn:
                run_repo.release(conn, run.id, self.me)
        except ServiceUnavailable as exc:
            self.hooks.release_failed(self.me, run, exc)

    def _loop(self, run: RunInfo) -> RunState:
        """Tick until the run is terminal, riding out service outages (a database,
        broker or store restart) with backoff for up to ``connect_deadline_seconds``."""
        outage = Outage(
            self.settings.connect_deadline_seconds,
            log,
            f"run {run.label}",
            fields(run=run.label, master=self.me),
        )
        self._healthy_since = time.monotonic()
        while True:
            try:
                with db_errors(self.settings.database_url):
                    terminal, moved = self._tick(run.id)
            except ServiceUnavailable as exc:
                time.sleep(outage.failed(exc))
                self._healthy_since = float("inf")  # until a tick succeeds again
                continue
            if self._healthy_since == float("inf"):
                self._healthy_since = time.monotonic()
            outage.recovered()
            if terminal is not None:
                return terminal
            if not moved:
                time.sleep(self.settings.poll_interval)

    def _tick(self, run_id: int) -> tuple[RunState | None, bool]:
        """One pass of idempotent steps: (terminal state or None, whether anything moved)."""
        with self.engine.begin() as conn:
            run_repo.heartbeat(conn, run_id, self.me)
            run = run_repo.get_run(conn, run_id)
        assert run is not None
        self.hooks.ticked(self.me, run)
        if self.on_tick is not None:
            self.on_tick(run)
        if run.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED):
            return run.state, True
        if run.cancel_requested:
            with self.engine.begin() as conn:
                run_repo.move(
                    conn,
                    run.id,
                    (RunState.PLANNING, *WORKING_RUN_STATES),
                    RunState.CANCELLED,
                    actor=self.me,
                    error="cancelled on request",
                )
            self.hooks.cancelled(self.me, run)
            return None, True
        if run.state is RunState.PLANNING:
            self.plan(run)
            return None, True
        return None, self.step(run)

    def plan(self, run: RunInfo) -> None:
        plan = compute_plan(self.store, self.job, run, self.open_store, engine=self.engine)
        with self.engine.begin() as conn:
            record_plan(conn, run, plan, self.me)

    def step(self, run: RunInfo) -> bool:
        """One pass over a mapping/reducing run; True when the state moved."""
        stage = STAGE_OF_STATE[run.state]
        params = run.params
        with self.engine.begin() as conn:
            for chunk_id in chunk_repo.reclaim_expired(conn, run.id, params.max_attempts, self.me):
                self.hooks.lease_expired(self.me, run, stage, chunk_id)
            self._take_over_dead_workers(conn, run, stage)
            dead = chunk_repo.first_dead(conn, run.id)
            if dead is not None:
                reason = (
                    f"{dead.stage} chunk {dead.idx} dead after {params.max_attempts} attempts: "
                    f"{dead.error}"
                )
                run_repo.move(conn, run.id, run.state, RunState.FAILED, actor=self.me, error=reason)
                self.hooks.failed(self.me, run, dead.stage, reason)
                return True
            counts = chunk_repo.counts_by_state(conn, run.id, stage)
            total = sum(counts.values())
            if total and counts.get(ChunkState.DONE.value, 0) == total:
                nxt = NEXT_STATE[run.state]
                if stage is Stage.REDUCE and chunk_repo.counts_by_state(
                    conn, run.id, Stage.COMBINE
                ):
                    nxt = RunState.COMBINING  # a sharded job: its groups' shards combine next
                rows, malformed = 0, 0
                if nxt is RunState.SUCCEEDED:
                    rows, malformed = run_repo.roll_up_counters(conn, run.id)
                self.hooks.stage_done(self.me, run, stage, nxt, rows, malformed)
                run_repo.move(conn, run.id, run.state, nxt, actor=self.me)
                return True
            if stage is Stage.MAP:
                asked = request_split(conn, run.id, params.split_min_rows, self.me)
                if asked is not None:
                    self.hooks.split_requested(
                        self.me, run, asked.chunk_id, asked.idx, asked.rows_read
                    )
        sent = dispatch(self.engine, self.publisher, run, stage, self.me)
        if sent:
            self.hooks.published(self.me, run, sent)
        return False

    def _take_over_dead_workers(self, conn: Connection, run: RunInfo, stage: Stage) -> None:
        """Take back the claims of workers that stopped heartbeating, long before
        their leases run out. Not until this master has itself ticked without a
        database outage for ``worker_dead_seconds``: during an outage no worker
        could beat, and none of them is dead for that."""
        dead_s = self.settings.worker_dead_seconds
        if time.monotonic() - self._healthy_since < dead_s:
            return
        taken = chunk_repo.reclaim_orphaned(conn, run.id, run.params.max_attempts, self.me, dead_s)
        for chunk_id in taken:
            self.hooks.worker_dead(self.me, run, stage, chunk_id, dead_s)
