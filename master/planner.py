"""Planning: turn a day into chunk specs, then record them in one transaction.

Reads (region boundaries, sampled keys) happen before the transaction; the
chunks and the run's move to ``mapping`` then commit together, so a master
killed mid-plan leaves either no plan or the whole plan.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Connection

from nightfold.common.db import plans as plan_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.runs import RunInfo
from nightfold.common.jobs import shards
from nightfold.common.jobs.base import Job
from nightfold.common.keys import (
    HOT_COLUMN,
    PARTIAL_FAMILY,
    PARTIALS_TABLE,
    KeyRange,
    combine_prefix,
    day_ranges,
    hot_groups_key,
    partial_prefix,
    prefix_range,
)
from nightfold.common.states import Stage
from nightfold.common.store.base import Store
from nightfold.master.splitter import split

log = logging.getLogger(__name__)

SAMPLES_PER_CHUNK = 16
SCAN_THREADS = 4
"""Key ranges the planner samples at once, each thread on a connection of its own:
the keys-only sampling scan is most of planning (1M keys: 8.0 s on one connection,
4.8 s on four, on this 2-core machine; more on a cluster, where regions are served
in parallel)."""


@dataclass(frozen=True)
class Plan:
    specs: list[ChunkSpec]
    rows_estimate: int

    @property
    def map_chunks(self) -> int:
        return sum(1 for s in self.specs if s.stage is Stage.MAP)

    @property
    def reduce_items(self) -> int:
        return sum(1 for s in self.specs if s.stage is Stage.REDUCE)


def sample_keys(
    store: Store, table: str, ranges: list[KeyRange], every: int
) -> tuple[list[bytes], int]:
    """Every ``every``-th key of the ranges (keys only, streamed), and the row count."""
    samples: list[bytes] = []
    count = 0
    for key_range in ranges:
        for i, (key, _cols) in enumerate(
            store.scan(table, key_range, keys_only=True, batch_size=5000)
        ):
            if i % every == 0:
                samples.append(key)
            count += 1
    return samples, count


def sample_keys_parallel(
    open_store: Callable[[], Store],
    table: str,
    ranges: list[KeyRange],
    every: int,
    threads: int = SCAN_THREADS,
) -> tuple[list[bytes], int]:
    """:func:`sample_keys` over the ranges on up to ``threads`` connections of
    ``open_store``: the same samples in the same order (each range is sampled
    from its own first key either way), sooner."""
    threads = max(1, min(threads, len(ranges)))
    local = threading.local()
    opened: list[Store] = []
    lock = threading.Lock()

    def one(key_range: KeyRange) -> tuple[list[bytes], int]:
        store: Store | None = getattr(local, "store", None)
        if store is None:
            store = local.store = open_store()
            with lock:
                opened.append(store)
        return sample_keys(store, table, [key_range], every)

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="nightfold-plan") as pool:
            parts = list(pool.map(one, ranges))
    finally:
        for store in opened:
            with contextlib.suppress(Exception):
                store.close()
    return [key for samples, _ in parts for key in samples], sum(n for _, n in parts)


def compute_plan(
    store: Store,
    job: Job[object],
    run: RunInfo,
    open_store: Callable[[], Store] | None = None,
) -> Plan:
    """Split the run's day into map chunks of about ``chunk_rows`` rows, plus the
    reduce items (one per bucket), from region boundaries and sampled keys
    (sampled on several connections of ``open_store`` when given)."""
    params = run.params
    ranges = day_ranges(run.day, params.salt_buckets)
    every = max(1, params.chunk_rows // SAMPLES_PER_CHUNK)
    store.ensure_table(job.raw_table, ["o"])
    store.ensure_table(PARTIALS_TABLE, [PARTIAL_FAMILY])
    store.ensure_table(job.summary_table, [job.summary_family])
    if open_store is None:
        samples, rows = sample_keys(store, job.raw_table, ranges, every)
    else:
        samples, rows = sample_keys_parallel(open_store, job.raw_table, ranges, every)
    regions = store.region_starts(job.raw_table)
    map_ranges = split(ranges, regions, samples, every, params.chunk_rows)
    specs = [ChunkSpec(Stage.MAP, i, r) for i, r in enumerate(map_ranges)]
    for bucket in range(params.reduce_buckets):
        prefix = partial_prefix(run.job, run.day, run.generation, bucket)
        specs.append(ChunkSpec(Stage.REDUCE, bucket, prefix_range(prefix)))
    if job.sharded:  # only the hot groups are split; their shards meet again in combine
        hot = shards.hot_groups(job, samples, every, params.chunk_rows)
        if hot is not None:  # written before the plan is recorded: every map chunk reads it
            key = hot_groups_key(run.job, run.day, run.generation)
            store.put_many(PARTIALS_TABLE, [(key, {HOT_COLUMN: shards.encode_hot(hot)})])
        for bucket in range(params.reduce_buckets):
            prefix = combine_prefix(run.job, run.day, run.generation, bucket)
            specs.append(ChunkSpec(Stage.COMBINE, bucket, prefix_range(prefix)))
    return Plan(specs=specs, rows_estimate=rows)


def record_plan(conn: Connection, run: RunInfo, plan: Plan, actor: str) -> bool:
    """Record the plan and move the run to mapping, atomically; False if another
    master planned it first."""
    if not plan_repo.record_plan(conn, run.id, plan.specs, actor):
        return False
    log.info(
        "run %s planned: %d map chunks, %d reduce items, %d combine items, ~%d rows",
        run.label,
        plan.map_chunks,
        plan.reduce_items,
        len(plan.specs) - plan.map_chunks - plan.reduce_items,
        plan.rows_estimate,
    )
    return True
