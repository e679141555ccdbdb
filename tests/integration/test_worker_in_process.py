"""The worker's chunk processor, consumer loop and the master's tick, driven in
process: every exit path of a chunk, on the embedded backends (SQLite + local
store) and on the real ones (MariaDB + HBase).

The run is planned and dispatched by the master's own code, and chunks are
claimed, executed and recorded by the worker's own code; what a test adds is
only the event it is about (a job that raises, a takeover in the middle of a
chunk, a cancel), through the jobs registry or the repository.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pika
import pytest
from sqlalchemy import Engine, select, update

from nightfold.common.config import Settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import Claim
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.db.models import Chunk, RunEvent
from nightfold.common.db.poll import queued_chunks
from nightfold.common.db.runs import RunInfo
from nightfold.common.errors import AccessRefused
from nightfold.common.jobs import get_job, register
from nightfold.common.jobs.base import MapOutput
from nightfold.common.states import ChunkState, RunState, Stage
from nightfold.common.store import open_store
from nightfold.common.store.base import Store
from nightfold.common.transport import Delivery, Hint, Publisher
from nightfold.common.transport.dbpoll import DbPollConsumer, DbPollPublisher
from nightfold.jobs.merchant_daily import MerchantDaily, MerchantPartial
from nightfold.master.hooks import MasterHooks
from nightfold.master.loop import Master
from nightfold.ops.seeding import seed_day
from nightfold.worker.consumer import ConsumerLoop
from nightfold.worker.executor import Result
from nightfold.worker.hooks import Hooks
from nightfold.worker.processor import ChunkProcessor, Outcome
from tests.support.databases import fresh_database

DAY = dt.date(2026, 11, 22)
ROWS = 400

# -- jobs whose chunks end the way a test wants --------------------------------------------

_during_map: dict[str, Callable[[], None]] = {}
"""Per job name: what happens while its map runs (set by a test)."""


@register
class InterruptedDaily(MerchantDaily):
    """merchant_daily that calls the test's hook in its first map batch."""

    name = "interrupted_daily"

    def map_rows(
        self,
        rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]],
        out: MapOutput[MerchantPartial],
    ) -> None:
        hook = _during_map.get(self.name)
        if hook is not None:
            hook()
        super().map_rows(rows, out)


@register
class MissingTableDaily(MerchantDaily):
    """Reads a raw table nobody created: the store refuses deterministically."""

    name = "missing_table_daily"
    raw_table: ClassVar[str] = "nightfold_raw_missing"


# -- fixtures -------------------------------------------------------------------------------


@dataclass
class Backends:
    settings: Settings
    engine: Engine
    open_store: Callable[[], Store]
    stores: list[Store] = field(default_factory=list)

    def store(self) -> Store:
        s = self.open_store()
        self.stores.append(s)
        return s


@pytest.fixture(params=["embedded", "real"])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    kind = "sqlite" if request.param == "embedded" else "mariadb"
    with fresh_database(kind, tmp_path) as db_url:
        if request.param == "embedded":
            store_url = f"local://{tmp_path / 'store.sqlite'}"
        else:
            store_url = request.getfixturevalue("hbase_url")
        settings = Settings(
            database_url=db_url,
            store_url=store_url,
            broker_url="db://",
            chunk_rows=10_000,
            reduce_buckets=2,
            max_attempts=2,
            lease_seconds=30,
            connect_deadline_seconds=5,
            shutdown_grace_seconds=5,
            poll_interval=0.05,
        )
        engine = make_engine(db_url)
        upgrade(engine)
        b = Backends(settings, engine, lambda: open_store(store_url))
        seed_day(b.store(), DAY, ROWS)
        try:
            yield b
        finally:
            for s in b.stores:
                s.close()
            engine.dispose()


class Recorder(Hooks):
    """Remembers the events it hears, by name."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()

    def _add(self, name: str) -> None:
        with self._lock:
            self.events.append(name)

    def claimed(self, worker: str, claim: Claim) -> None:
        self._add("claimed")

    def done(self, worker: str, claim: Claim, result: Result, seconds: float) -> None:
        self._add("done")

    def failed(self, worker: str, claim: Claim, state: ChunkState | None, error: str) -> None:
        self._add(f"failed:{state.value if state else None}")

    def released(self, worker: str, claim: Claim, reason: str) -> None:
        self._add("released")

    def lost(self, worker: str, claim: Claim, exc: Exception) -> None:
        self._add("lost")

    def stale(self, worker: str, hint: Hint) -> None:
        self._add("stale")


def start_run(
    b: Backends, job_name: str, publisher: Publisher | None = None
) -> tuple[Master, RunInfo]:
    """A planned run of ``job_name`` with its map chunks queued, by the master's code."""
    publisher = publisher if publisher is not None else DbPollPublisher()
    master = Master(b.settings, b.engine, b.store(), publisher, get_job(job_name))
    run = master.open_run(DAY, rerun=False)
    assert run is not None
    master.acquire(run)
    master.plan(run)
    run = master._read(run.id)
    assert run.state is RunState.MAPPING
    master.step(run)  # opens the window: chunks queued
    return master, run


def queued_hints(b: Backends) -> list[Hint]:
    with b.engine.connect() as conn:
        found = chunk_repo.claimable(conn, 1000)
    assert found
    return [Hint(c.run_id, c.chunk_id, c.stage, c.idx) for c in found]


def chunk_row(b: Backends, chunk_id: int) -> Any:
    with b.engine.connect() as conn:
        return conn.execute(select(Chunk).where(Chunk.id == chunk_id)).one()


def event_kinds(b: Backends, chunk_id: int) -> list[str]:
    with b.engine.connect() as conn:
        return list(
            conn.execute(
                select(RunEvent.kind).where(RunEvent.chunk_id == chunk_id).order_by(RunEvent.id)
            ).scalars()
        )


def processor(b: Backends, hooks: Hooks, me: str = "w-test") -> ChunkProcessor:
    return ChunkProcessor(b.settings, b.engine, me, hooks)


# -- the processor: one outcome per exit path -----------------------------------------------


def test_processed_chunk_is_done(backends: Backends) -> None:
    start_run(backends, "merchant_daily")
    hint = queued_hints(backends)[0]
    rec = Recorder()
    got = processor(backends, rec).process(hint, backends.store())
    assert got.outcome is Outcome.DONE
    assert rec.events == ["claimed", "done"]
    assert chunk_row(backends, hint.chunk_id).state == ChunkState.DONE.value
    assert event_kinds(backends, hint.chunk_id)[-2:] == ["claimed", "done"]


def test_stale_hint_changes_nothing(backends: Backends) -> None:
    start_run(backends, "merchant_daily")
    hint = queued_hints(backends)[0]
    store = backends.store()
    assert processor(backends, Recorder()).process(hint, store).outcome is Outcome.DONE
    rec = Recorder()
    # the same hint again (a redelivery): the chunk is not queued any more
    got = processor(backends, rec, "w-late").process(hint, store)
    assert got.outcome is Outcome.STALE
    assert rec.events == ["stale"]
    row = chunk_row(backends, hint.chunk_id)
    assert (row.state, row.owner, row.attempt) == (ChunkState.DONE.value, "w-test", 1)


def test_job_error_fails_the_attempt_then_the_chunk_dies(backends: Backends) -> None:
    def boom() -> None:
        raise ValueError("poison row")

    _during_map["interrupted_daily"] = boom
    try:
        master, run = start_run(backends, "interrupted_daily")
        hint = queued_hints(backends)[0]
        rec = Recorder()
        proc = processor(backends, rec)
        first = proc.process(hint, backends.store())
        assert (first.outcome, first.state) == (Outcome.FAILED, ChunkState.PENDING)
        master.step(master._read(run.id))  # queues it again
        second = proc.process(hint, backends.store())
    finally:
        _during_map.clear()
    assert (second.outcome, second.state) == (Outcome.FAILED, ChunkState.DEAD)  # max_attempts=2
    assert rec.events == ["claimed", "failed:pending", "claimed", "failed:dead"]
    row = chunk_row(backends, hint.chunk_id)
    assert row.state == ChunkState.DEAD.value
    assert row.error.startswith("ValueError: poison row")
    # and the master's next tick fails the run
    master.step(master._read(run.id))
    assert master._read(run.id).state is RunState.FAILED


def test_store_refusal_fails_the_attempt(backends: Backends) -> None:
    start_run(backends, "missing_table_daily")
    hint = queued_hints(backends)[0]
    # the planner created the job's tables: take the raw one away again
    store = backends.store()
    store.drop_table(MissingTableDaily.raw_table)
    got = processor(backends, Recorder()).process(hint, store)
    assert (got.outcome, got.state) == (Outcome.FAILED, ChunkState.PENDING)
    assert chunk_row(backends, hint.chunk_id).error.startswith("StoreRejected")


def test_lost_claim_when_taken_over_meanwhile(backends: Backends) -> None:
    holder: dict[str, int] = {}

    def taken_over() -> None:  # the master took it back and another worker won it
        with backends.engine.begin() as conn:
            conn.execute(
                update(Chunk)
                .where(Chunk.id == holder["chunk"])
                .values(owner="w-other", attempt=Chunk.attempt + 1)
            )

    _during_map["interrupted_daily"] = taken_over
    try:
        start_run(backends, "interrupted_daily")
        hint = queued_hints(backends)[0]
        holder["chunk"] = hint.chunk_id
        rec = Recorder()
        got = processor(backends, rec).process(hint, backends.store())
    finally:
        _during_map.clear()
    assert got.outcome is Outcome.LOST
    assert rec.events == ["claimed", "lost"]
    row = chunk_row(backends, hint.chunk_id)
    assert (row.state, row.owner) == (ChunkState.CLAIMED.value, "w-other")  # untouched by us


def test_released_uncounted_when_the_grace_period_is_over(backends: Backends) -> None:
    start_run(backends, "merchant_daily")
    hint = queued_hints(backends)[0]
    rec = Recorder()
    proc = processor(backends, rec)
    proc.hard_stop.set()
    got = proc.process(hint, backends.store())
    assert got.outcome is Outcome.RELEASED
    assert rec.events == ["claimed", "released"]
    row = chunk_row(backends, hint.chunk_id)
    assert (row.state, row.owner, row.attempt) == (ChunkState.PENDING.value, None, 0)
    assert event_kinds(backends, hint.chunk_id)[-1] == "released"


def test_released_on_cancel_before_the_reduce_writes(backends: Backends) -> None:
    master, run = start_run(backends, "merchant_daily")
    proc = processor(backends, Recorder())
    for hint in queued_hints(backends):
        assert proc.process(hint, backends.store()).outcome is Outcome.DONE
    master.step(master._read(run.id))  # map done: reducing
    master.step(master._read(run.id))  # reduce items queued
    assert master._read(run.id).state is RunState.REDUCING
    hint = queued_hints(backends)[0]

    class CancelOnClaim(Recorder):
        def claimed(self, worker: str, claim: Claim) -> None:
            super().claimed(worker, claim)
            with backends.engine.begin() as conn:
                assert run_repo.request_cancel(conn, run.id, "t")

    rec = CancelOnClaim()
    got = processor(backends, rec).process(hint, backends.store())
    assert got.outcome is Outcome.RELEASED  # the fence before the summary writes saw it
    assert rec.events == ["claimed", "released"]
    assert chunk_row(backends, hint.chunk_id).state == ChunkState.PENDING.value


def test_store_outage_releases_uncounted(backends: Backends) -> None:
    if not backends.settings.store_url.startswith("local:"):
        pytest.skip("HBaseStore reconnects after close(); an HBase outage needs tests/faults")
    start_run(backends, "merchant_daily")
    hint = queued_hints(backends)[0]
    store = backends.open_store()
    store.close()  # the store went away under the worker
    got = processor(backends, Recorder()).process(hint, store)
    assert got.outcome is Outcome.UNAVAILABLE
    assert got.error is not None
    row = chunk_row(backends, hint.chunk_id)
    assert (row.state, row.attempt) == (ChunkState.PENDING.value, 0)


# -- the consumer loop ----------------------------------------------------------------------


def consumer_loop(b: Backends, **kw: Any) -> ConsumerLoop:
    proc = processor(b, Recorder())
    return ConsumerLoop(
        b.settings,
        proc,
        lambda: DbPollConsumer(queued_chunks(b.engine, b.settings.database_url)),
        b.open_store,  # each processing thread opens and closes its own
        Hooks(),
        **kw,
    )


def test_consumer_loop_stops_after_max_chunks(backends: Backends) -> None:
    start_run(backends, "merchant_daily")
    total = len(queued_hints(backends))
    loop = consumer_loop(backends, concurrency=2, max_chunks=1)
    loop.run()
    assert 1 <= loop.chunks_done <= 2  # the second thread may finish the one it holds
    assert loop.outcomes.get(Outcome.DONE) == loop.chunks_done
    assert loop._idle()
    with backends.engine.connect() as conn:
        counts = chunk_repo.counts_by_state(conn, master_run_id(backends), Stage.MAP)
    assert counts.get(ChunkState.DONE.value, 0) == loop.chunks_done
    assert counts.get(ChunkState.CLAIMED.value, 0) == 0
    assert total >= loop.chunks_done


def master_run_id(b: Backends) -> int:
    with b.engine.connect() as conn:
        run = run_repo.latest_run(conn, "merchant_daily", DAY)
    assert run is not None
    return run.id


def test_consumer_loop_shutdown_releases_after_grace(backends: Backends) -> None:
    entered = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        entered.set()
        leave.wait(10)

    _during_map["interrupted_daily"] = hold
    try:
        start_run(backends, "interrupted_daily")
        loop = consumer_loop(backends, concurrency=1)
        loop.settings = Settings(**{**vars(backends.settings), "shutdown_grace_seconds": 0.2})
        runner = threading.Thread(target=loop.run)
        runner.start()
        assert entered.wait(20)
        loop.request_stop()  # as on SIGTERM
        while not loop.hard_stop.is_set():
            loop.hard_stop.wait(0.05)
        leave.set()  # the batch ends; the next beat sees the hard stop
        runner.join(20)
    finally:
        leave.set()
        _during_map.clear()
    assert not runner.is_alive()
    assert loop.outcomes == {Outcome.RELEASED: 1}
    assert loop.chunks_done == 0


def test_consumer_loop_gives_up_when_refused(backends: Backends) -> None:
    start_run(backends, "merchant_daily")

    def refused() -> Store:  # as a store answers bad credentials
        raise AccessRefused("store", "access denied for user 'nightfold'")

    loop = ConsumerLoop(
        backends.settings,
        processor(backends, Recorder()),
        lambda: DbPollConsumer(queued_chunks(backends.engine, backends.settings.database_url)),
        refused,
        Hooks(),
    )
    with pytest.raises(AccessRefused):
        loop.run()
    assert isinstance(loop.fatal, AccessRefused)
    assert loop.outcomes == {Outcome.REFUSED: 1}
    with backends.engine.connect() as conn:
        counts = chunk_repo.counts_by_state(conn, master_run_id(backends), Stage.MAP)
    assert counts.get(ChunkState.CLAIMED.value, 0) == 0  # nothing left held


@pytest.mark.parametrize("backends", ["real"], indirect=True)
def test_consumer_loop_dead_letters_garbage_and_works_the_hints(
    backends: Backends, broker_url: str
) -> None:
    from nightfold.common.transport.rabbitmq import RabbitConsumer, RabbitPublisher, queue_depth

    declare = RabbitConsumer(broker_url, prefetch=1)
    declare.next_delivery(0.1)  # declares the queues
    declare.close()
    params = pika.URLParameters(broker_url.split("?", 1)[0])
    conn = pika.BlockingConnection(params)
    queue = broker_url.split("queue=", 1)[1].split("&", 1)[0]
    conn.channel().basic_publish("", queue, b"\x80\x04 not a hint")
    conn.close()
    publisher = RabbitPublisher(broker_url)
    try:
        _, run = start_run(backends, "merchant_daily", publisher)
    finally:
        publisher.close()
    with backends.engine.connect() as conn_:
        maps = chunk_repo.counts_by_state(conn_, run.id, Stage.MAP)
    total = sum(maps.values())

    class DeadLetters(Hooks):
        count = 0

        def dead_lettered(self, worker: str, delivery: Delivery) -> None:
            DeadLetters.count += 1

    loop = ConsumerLoop(
        backends.settings,
        processor(backends, Recorder()),
        lambda: RabbitConsumer(broker_url, prefetch=2),
        backends.open_store,
        DeadLetters(),
        concurrency=2,
        max_chunks=total,
    )
    runner = threading.Thread(target=loop.run)
    runner.start()
    runner.join(60)
    assert not runner.is_alive()
    assert DeadLetters.count == 1
    assert loop.chunks_done == total
    # the garbage went to the dead-letter queue; a hint or two may still come back
    # (acks queued as the loop stops at max_chunks can be lost -- as before the
    # split): they are stale, as every chunk is done
    assert queue_depth(broker_url)[1] == 1
    with backends.engine.connect() as conn_:
        assert chunk_repo.counts_by_state(conn_, run.id, Stage.MAP) == {"done": total}


class SlowCountLoop(ConsumerLoop):
    """A loop whose ``chunks_done`` yields the GIL between its read and its write.

    On CPython 3.11 a bare ``x += 1`` is never interrupted in practice, so the
    unlocked counter of the old runner lost no counts in a plain test; real
    code around the increment (a log call, a metric) is what opens the window.
    This widens it on purpose, so a missing lock shows up on every run."""

    _count = 0

    @property  # type: ignore[override]
    def chunks_done(self) -> int:
        value = self._count
        time.sleep(0)
        return value

    @chunks_done.setter
    def chunks_done(self, value: int) -> None:
        time.sleep(0)
        self._count = value


def _settle_from_threads(increment: Callable[[], None], threads: int, per_thread: int) -> None:
    workers = [
        threading.Thread(target=lambda: [increment() for _ in range(per_thread)])
        for _ in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def test_chunks_done_counts_every_finished_chunk_across_threads() -> None:
    """``chunks_done += 1`` ran on the processing threads without a lock; the
    loop now counts outcomes in ``_settle`` under its lock. Many threads settle
    at once, with the read-modify-write widened: the count must be exact, while
    the same counter bumped without the lock (the old code, the control) loses
    counts."""
    from nightfold.worker.processor import Processed

    settings = Settings(database_url="sqlite://", store_url="local:///nonexistent")
    proc = ChunkProcessor(settings, None, "w-count", Hooks())  # type: ignore[arg-type]
    loop = SlowCountLoop(settings, proc, lambda: None, lambda: None, Hooks())  # type: ignore[arg-type,return-value]
    threads, per_thread = 8, 300
    loop._busy = threads * per_thread
    done = Processed(Outcome.DONE, 1, ChunkState.DONE)

    _settle_from_threads(
        lambda: loop._settle(Delivery(hint=None), done, reject=False), threads, per_thread
    )
    assert loop.chunks_done == threads * per_thread
    assert loop._busy == 0

    def unlocked_increment() -> None:  # what the old runner did on each processing thread
        control.chunks_done += 1

    control = SlowCountLoop(settings, proc, lambda: None, lambda: None, Hooks())  # type: ignore[arg-type,return-value]
    _settle_from_threads(unlocked_increment, threads, per_thread)
    assert control.chunks_done < threads * per_thread, "the control should lose counts"


# -- the master's tick ----------------------------------------------------------------------


class MasterRecorder(MasterHooks):
    def __init__(self) -> None:
        self.events: list[str] = []

    def stage_done(
        self, me: str, run: RunInfo, stage: Stage, nxt: RunState, rows: int, malformed: int
    ) -> None:
        self.events.append(f"{stage.value} done -> {nxt.value} ({rows} rows)")

    def cancelled(self, me: str, run: RunInfo) -> None:
        self.events.append("cancelled")


def test_master_ticks_a_run_to_success_with_in_process_workers(backends: Backends) -> None:
    rec = MasterRecorder()
    master = Master(
        backends.settings,
        backends.engine,
        backends.store(),
        DbPollPublisher(),
        get_job("merchant_daily"),
        hooks=[rec],
    )
    run = master.open_run(DAY, rerun=False)
    assert run is not None
    master.acquire(run)
    proc, store = processor(backends, Recorder()), backends.store()
    seen: list[RunState] = []
    terminal: RunState | None = None
    for _ in range(50):
        terminal, _moved = master._tick(run.id)
        state = master._read(run.id).state
        if not seen or seen[-1] is not state:
            seen.append(state)
        if terminal is not None:
            break
        with backends.engine.connect() as conn:
            found = chunk_repo.claimable(conn, 1000)
        for c in found:
            assert proc.process(Hint(c.run_id, c.chunk_id, c.stage, c.idx), store).outcome is (
                Outcome.DONE
            )
    assert terminal is RunState.SUCCEEDED
    # merchant_daily is sharded, but a uniform day has no hot group: no combine stage
    assert seen == [RunState.MAPPING, RunState.REDUCING, RunState.SUCCEEDED]
    with backends.engine.connect() as conn:
        assert chunk_repo.rows_done(conn, run.id) == ROWS
    assert rec.events == [
        "map done -> reducing (0 rows)",
        f"reduce done -> succeeded ({ROWS} rows)",
    ]


def test_master_drives_a_run_with_a_consumer_loop_in_a_thread(backends: Backends) -> None:
    loop = consumer_loop(backends, concurrency=2)
    worker = threading.Thread(target=loop.run)
    worker.start()
    try:
        master = Master(
            backends.settings,
            backends.engine,
            backends.store(),
            DbPollPublisher(),
            get_job("merchant_daily"),
        )
        outcome = master.drive(DAY)
    finally:
        loop.request_stop()
        worker.join(30)
    assert outcome.state is RunState.SUCCEEDED, outcome.error
    assert not worker.is_alive()
    assert loop.outcomes.get(Outcome.DONE) == loop.chunks_done > 0


def test_master_tick_cancels_on_request_and_hints_go_stale(backends: Backends) -> None:
    master, run = start_run(backends, "merchant_daily")
    hint = queued_hints(backends)[0]
    with backends.engine.begin() as conn:
        assert run_repo.request_cancel(conn, run.id, "t")
    master._tick(run.id)
    terminal, _ = master._tick(run.id)
    assert terminal is RunState.CANCELLED
    assert processor(backends, Recorder()).process(hint, backends.store()).outcome is (
        Outcome.STALE
    )


@pytest.mark.parametrize("backends", ["embedded", "real"], indirect=True)
def test_a_long_chunk_holds_no_unacknowledged_hint(backends: Backends, broker_url: str) -> None:
    """(The real RabbitMQ either way; the database and store as ``backends``.)
    RabbitMQ closes a channel whose delivery stays unacknowledged past its
    ``consumer_timeout`` (30 min by default): a chunk may run longer than that. The
    hint is acknowledged once the claim is decided, and nothing else is taken while
    the chunk runs, so losing the channel mid-chunk (as the broker does at the
    timeout) gives no hint back to the queue and costs the chunk nothing."""
    from nightfold.common.transport.rabbitmq import RabbitConsumer, RabbitPublisher, queue_depth

    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        leave.wait(60)

    class Dropping(RabbitConsumer):
        """Loses its connection on the I/O thread when told (a channel closed by the
        broker), once an ack it sent has gone out (a full pump after it)."""

        drop, dropped = threading.Event(), threading.Event()
        pumps, acked_at = 0, -1

        def ack(self, delivery: Delivery) -> None:
            super().ack(delivery)
            if Dropping.acked_at < 0:
                Dropping.acked_at = Dropping.pumps

        def pump(self, timeout: float) -> None:
            ready = 0 <= Dropping.acked_at < Dropping.pumps
            if Dropping.drop.is_set() and ready and self._conn is not None:
                Dropping.drop.clear()
                self._conn.close()
                Dropping.dropped.set()
            super().pump(timeout)
            Dropping.pumps += 1

    publisher = RabbitPublisher(broker_url)
    try:
        _, run = start_run(backends, "interrupted_daily", publisher)
    finally:
        publisher.close()
    with backends.engine.connect() as conn:
        total = sum(chunk_repo.counts_by_state(conn, run.id, Stage.MAP).values())
    rec = Recorder()
    loop = ConsumerLoop(
        backends.settings,
        processor(backends, rec),
        lambda: Dropping(broker_url, prefetch=1),
        backends.open_store,
        rec,
        max_chunks=total,
    )
    _during_map["interrupted_daily"] = hold
    runner = threading.Thread(target=loop.run)
    runner.start()
    try:
        # Given a chunk being worked (its hint taken, its claim recorded)
        assert inside.wait(30)
        waiting = total - 1
        wait_until(lambda: queue_depth(broker_url) == (waiting, 0))
        # When the worker's channel is lost in the middle of the chunk (the hint's ack
        # sent: it went out when the claim was decided, the chunk still running)
        Dropping.drop.set()
        assert Dropping.dropped.wait(10), "no ack went out while the chunk ran"
        assert not leave.is_set()
        # Then its hint does not come back: it was acknowledged when claimed
        for _ in range(10):
            assert queue_depth(broker_url) == (waiting, 0)
            leave.wait(0.1)
    finally:
        leave.set()
        runner.join(60)
        _during_map.clear()
    # And the chunk and the rest finish, each done once, with no stale redelivery
    assert not runner.is_alive()
    assert loop.chunks_done == total and "stale" not in rec.events
    with backends.engine.connect() as conn:
        assert chunk_repo.counts_by_state(conn, run.id, Stage.MAP) == {"done": total}
    assert queue_depth(broker_url) == (0, 0)


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
