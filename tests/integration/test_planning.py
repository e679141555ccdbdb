"""Planning a pre-split day reads its regions and a bounded handful of keys, never
the day, on both backends (the embedded store and the real HBase); an earlier
night's chunks (guideposts, from the database) replace the probes and set the
cuts. The store calls are counted by a wrapper of the real store (instrumentation,
``tests/support/counting.py``)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from statistics import median

import pytest
from sqlalchemy import Engine, update

from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.db.models import Chunk, Run
from nightfold.common.db.plans import record_plan
from nightfold.common.db.runs import RunInfo, RunParams, create_run
from nightfold.common.jobs import get_job
from nightfold.common.keys import KeyRange, day_ranges, move_day
from nightfold.common.states import RunState, Stage
from nightfold.common.store import Store, open_store
from nightfold.jobs.merchant_daily import MerchantDaily
from nightfold.master.planner import PROBE_KEYS, PROBES_PER_PIECE, compute_plan
from nightfold.ops.seeding import seed_day
from tests.support.counting import CountingStore, Tally, counting_opener
from tests.support.databases import fresh_database

DAY = dt.date(2026, 11, 22)
ROWS = 20_000
REGIONS = 32  # 16 salt buckets, then one cut inside the day of each
CHUNK_ROWS = 300


@pytest.fixture(params=["embedded", pytest.param("real", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A store URL holding the seeded, pre-split day and a database at the schema head:
    the embedded store and SQLite, or the real HBase and MariaDB."""
    if request.param == "embedded":
        url, kind = f"local://{tmp_path / 'store.sqlite'}", "sqlite"
    else:
        url, kind = str(request.getfixturevalue("hbase_url")), "mariadb"
    store = open_store(url)
    try:
        seed_day(store, DAY, ROWS, salt_buckets=16, regions=REGIONS)
        assert len(store.region_starts("nightfold_raw")) + 1 == REGIONS
    finally:
        store.close()
    with fresh_database(kind, tmp_path) as db_url:
        engine = make_engine(db_url)
        upgrade(engine)
        yield url, engine
        engine.dispose()


class Unsharded(MerchantDaily):
    """merchant_daily without shards: nothing to plan but the chunks."""

    sharded = False


def new_run(engine: Engine, day: dt.date, generation: int = 1) -> RunInfo:
    params = RunParams(chunk_rows=CHUNK_ROWS, salt_buckets=16)
    with engine.begin() as conn:
        run = create_run(conn, "merchant_daily", day, generation, params, "test")
    assert run is not None
    return run


def day_keys(store: Store) -> list[bytes]:
    return [
        k for r in day_ranges(DAY, 16) for k, _ in store.scan("nightfold_raw", r, keys_only=True)
    ]


def back(key: bytes) -> bytes:
    moved = move_day(key, DAY, DAY - dt.timedelta(days=1))
    assert moved is not None
    return moved


def count(keys: list[bytes], r: KeyRange) -> int:
    return sum(1 for k in keys if k in r)


def assert_partitions_the_day(chunks: list[KeyRange]) -> None:
    """The chunks are the day's ranges cut up: in order, no gap, no overlap."""
    it = iter(chunks)
    for r in day_ranges(DAY, 16):
        chunk = next(it)
        assert chunk.start == r.start
        while chunk.end != r.end:
            after = next(it)
            assert after.start == chunk.end
            chunk = after
    assert next(it, None) is None


def test_a_presplit_day_is_planned_from_its_regions_with_bounded_reads(
    backend: tuple[str, Engine],
) -> None:
    seeded, engine = backend
    # Given a day in a table of 32 regions, no earlier night
    tally = Tally()
    store = CountingStore(open_store(seeded), tally)
    run = new_run(engine, DAY)
    # When the master plans it (probes on several connections)
    try:
        plan = compute_plan(
            store,
            get_job("merchant_daily"),
            run,
            counting_opener(lambda: open_store(seeded), tally),
            engine=engine,
        )
        keys = day_keys(store.inner)
    finally:
        store.close()
    # Then it listed the regions once and probed each piece a bounded number of times,
    # reading at most PROBE_KEYS keys a probe: never a scan of the day
    assert (plan.regions, plan.pieces, plan.estimate_source) == (REGIONS, REGIONS, "probes")
    assert tally.calls["region_starts"] == 1
    assert tally.calls["scan"] == 0
    assert tally.calls["probe_keys"] == plan.probes <= plan.pieces * (PROBES_PER_PIECE + 2)
    assert tally.keys_read() <= plan.probes * PROBE_KEYS
    assert tally.keys_read() <= len(keys)  # no key read twice
    # And the map chunks partition the day, each inside one region piece
    chunks = [s.key_range for s in plan.specs if s.stage is Stage.MAP]
    assert_partitions_the_day(chunks)
    assert sum(count(keys, c) for c in chunks) == len(keys)
    assert len(chunks) >= REGIONS
    # And the estimate is an estimate, of the right order
    assert len(keys) / 4 <= plan.rows_estimate <= len(keys) * 4
    # And the merchants sharded are the big ones
    assert_hot_are_the_big_ones(plan.hot, keys)


def test_an_earlier_nights_chunks_replace_the_probes(backend: tuple[str, Engine]) -> None:
    seeded, engine = backend
    store = open_store(seeded)
    try:
        keys = day_keys(store)
    finally:
        store.close()
    # Given yesterday's succeeded run whose map chunks held 150 rows each (the same
    # shape of day: today's cut points moved a day back)
    yesterday = new_run(engine, DAY - dt.timedelta(days=1))
    today: list[KeyRange] = []
    for r in day_ranges(DAY, 16):
        inside = [k for k in keys if k in r]
        cuts = [r.start, *inside[150::150], r.end]
        today += [KeyRange(a, b) for a, b in pairwise(cuts)]
    specs = [
        ChunkSpec(Stage.MAP, i, KeyRange(back(r.start), back(r.end))) for i, r in enumerate(today)
    ]
    with engine.begin() as conn:
        assert record_plan(conn, yesterday.id, specs, "test")
        for spec, r in zip(specs, today, strict=True):
            conn.execute(
                update(Chunk)
                .where(Chunk.run_id == yesterday.id, Chunk.idx == spec.idx, Chunk.stage == "map")
                .values(state="done", rows_read=count(keys, r))
            )
        conn.execute(update(Run).where(Run.id == yesterday.id).values(state=RunState.SUCCEEDED))
    # When today is planned for a job that does not shard (a sharded one, like
    # merchant_daily, probes every piece for its hot groups all the same)
    tally = Tally()
    counted = CountingStore(open_store(seeded), tally)
    try:
        plan = compute_plan(counted, Unsharded(), new_run(engine, DAY), engine=engine)
    finally:
        counted.close()
    # Then the store was asked for its regions only, and the chunks hold about chunk_rows
    assert plan.estimate_source == "guideposts"
    assert tally.reads() == 0 and tally.calls["region_starts"] == 1
    chunks = [s.key_range for s in plan.specs if s.stage is Stage.MAP]
    assert_partitions_the_day(chunks)
    sizes = [count(keys, c) for c in chunks]
    assert sum(sizes) == len(keys)
    assert plan.rows_estimate == len(keys)
    assert 0.8 * CHUNK_ROWS <= median(sizes) <= 1.25 * CHUNK_ROWS
    assert max(sizes) <= 2 * CHUNK_ROWS


def assert_hot_are_the_big_ones(hot: tuple[str, ...] | None, keys: list[bytes]) -> None:
    """Every merchant of four chunks' rows or more is sharded, none below half a chunk
    (the planner's threshold is a chunk, of an estimate that runs low)."""
    job = get_job("merchant_daily")
    rows_of = Counter(job.group_of_key(k) for k in keys)
    assert hot is not None
    assert {g for g, n in rows_of.items() if g and n >= 4 * CHUNK_ROWS} <= set(hot)
    assert set(hot) <= {g for g, n in rows_of.items() if g and n >= CHUNK_ROWS / 2}


def done_night(
    engine: Engine, run: RunInfo, plan_specs: list[ChunkSpec], keys: list[bytes]
) -> None:
    """Record ``plan_specs`` as ``run``'s succeeded night, each map chunk done with its
    true row count among ``keys``: the guideposts a later night borrows."""
    maps = [s for s in plan_specs if s.stage is Stage.MAP]
    with engine.begin() as conn:
        assert record_plan(conn, run.id, maps, "test")
        for spec in maps:
            conn.execute(
                update(Chunk)
                .where(Chunk.run_id == run.id, Chunk.idx == spec.idx, Chunk.stage == "map")
                .values(state="done", rows_read=count(keys, spec.key_range))
            )
        conn.execute(update(Run).where(Run.id == run.id).values(state=RunState.SUCCEEDED))


def test_a_hot_merchant_is_found_by_the_probes_and_by_the_guideposts(
    backend: tuple[str, Engine],
) -> None:
    seeded, engine = backend
    job = get_job("merchant_daily")
    first, second = DAY + dt.timedelta(days=10), DAY + dt.timedelta(days=11)
    # Given two days where one merchant holds 30% of the rows
    store = open_store(seeded)
    try:
        for day in (first, second):
            seed_day(store, day, ROWS, salt_buckets=16, hot_share=0.3)
        keys = {
            day: [
                k
                for r in day_ranges(day, 16)
                for k, _ in store.scan("nightfold_raw", r, keys_only=True)
            ]
            for day in (first, second)
        }
        rows_of = Counter(job.group_of_key(k) for k in keys[first])
        hot = max((g for g in rows_of if g), key=lambda g: rows_of[g])
        assert rows_of[hot] >= 0.25 * ROWS
        # When the first is planned from probes, and the second from the first's chunks
        run1 = new_run(engine, first)
        plan1 = compute_plan(store, job, run1, engine=engine)
        done_night(engine, run1, plan1.specs, keys[first])
        plan2 = compute_plan(store, job, new_run(engine, second), engine=engine)
    finally:
        store.close()
    # Then both nights shard the big merchants (the guideposts set the second night's
    # cuts; a sharded job probes its pieces all the same, to find whose rows are where)
    assert plan1.estimate_source == "probes" and plan2.estimate_source == "guideposts"
    for plan, day in ((plan1, first), (plan2, second)):
        assert plan.hot is not None and hot in plan.hot
        assert_hot_are_the_big_ones(plan.hot, keys[day])
