"""Planning: turn a day into chunk specs, then record them in one transaction.

The store work of a plan does not grow with the day's rows:

1. one region listing of the raw table (``getTableRegions``);
2. the guideposts of an earlier night (its done map chunks, from MySQL:
   ``common/db/guideposts.py``), when there is one;
3. for each region piece no guidepost covers, at most ``2 + PROBES_PER_PIECE``
   probes (:meth:`Store.probe_keys`), each reading at most ``PROBE_KEYS`` keys,
   on up to ``SCAN_THREADS`` connections.

A pure function (``master/splitter.py``) turns them into chunks. The plan's row
count is an *estimate* (exact for pieces the probes read whole); it feeds the
log and progress, never the counters, which come from the chunks' own rows.

Reads happen before the transaction; the chunks and the run's move to
``mapping`` then commit together, so a master killed mid-plan leaves either no
plan or the whole plan.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from nightfold.common.db import guideposts as guidepost_repo
from nightfold.common.db import plans as plan_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.runs import RunInfo
from nightfold.common.jobs import shards
from nightfold.common.jobs.base import Job
from nightfold.common.keys import (
    PARTIAL_FAMILY,
    PARTIALS_TABLE,
    KeyRange,
    combine_prefix,
    day_ranges,
    partial_prefix,
    prefix_range,
)
from nightfold.common.states import Stage
from nightfold.common.store.base import Store
from nightfold.master.splitter import (
    Guidepost,
    PlannedChunk,
    Sample,
    covered,
    estimate_rows,
    moved_guideposts,
    pieces,
    plan_chunks,
    probe_points,
    sample_weights,
)

log = logging.getLogger(__name__)

PROBES_PER_PIECE = 4
"""Probes inside a piece without guideposts, besides its first and last keys."""
PROBE_KEYS = 256
"""Keys one probe reads at most (one Thrift batch)."""
SCAN_THREADS = 4
"""Pieces probed at once, each thread on a connection of its own."""
MAX_MAP_CHUNKS = 20_000
"""At most this many map chunks (or one per region piece, if more): 20,000 is a
1B-row day at the default 50k rows a chunk; beyond, chunks grow (PHOENIX-2724)."""
HOT_CHUNKS = 1
"""A sharded job's group is hot (sharded) from this many chunks' estimated rows. What
a group costs the reducer that holds it whole grows with its distinct values, at
most its rows: about a chunk is what one map chunk holds anyway, so sharding smaller
groups would cost a combine for no memory. The estimate (a few thousand probed
keys, each standing for a share of its piece's estimated rows) runs low where keys
cluster by group (0.56x for a merchant of 67 % of a 20k-row day), which is why the
bar is not higher; a group missed stays exact, only its reducer's memory grows."""
GUIDEPOST_LOOKBACK_DAYS = 7
"""How far back an earlier night may be to lend its guideposts."""


@dataclass(frozen=True)
class Plan:
    specs: list[ChunkSpec]
    rows_estimate: int
    """Estimated rows of the day (guideposts and probes; never a count of the day)."""
    estimate_source: str = "none"
    """``guideposts``, ``probes``, ``guideposts+probes`` or ``none`` (an empty day)."""
    regions: int = 1
    pieces: int = 0
    probes: int = 0
    """Probe reads made (store calls besides the region listing)."""
    hot: tuple[str, ...] | None = None
    """A sharded job's hot groups (estimated; None: every group is sharded)."""
    hot_groups: str | None = None
    """``hot`` as the run row records it with the plan (None: the job is not sharded)."""

    @property
    def map_chunks(self) -> int:
        return sum(1 for s in self.specs if s.stage is Stage.MAP)

    @property
    def reduce_items(self) -> int:
        return sum(1 for s in self.specs if s.stage is Stage.REDUCE)


def sample_piece(
    store: Store,
    table: str,
    piece: KeyRange,
    points: int = PROBES_PER_PIECE,
    limit: int = PROBE_KEYS,
) -> Sample:
    """Probe one piece: its first ``limit`` keys; unless that was all of it, its
    last ``limit`` keys and, unless the two met, the first ``limit`` keys from
    each of ``points`` points between them up to the next point. At most
    ``points + 2`` reads of at most ``limit`` keys each, never a key twice: a
    small piece is read whole (and counted exactly), a big one barely."""
    head = store.probe_keys(table, piece, limit)
    if len(head) < limit:
        return Sample(piece, limit, tuple(head))
    tail = store.probe_keys(table, piece, limit, reverse=True)
    sample = Sample(piece, limit, tuple(head), tuple(tail))
    if sample.whole:
        return sample
    starts = [head[-1] + b"\x00", *probe_points(head[-1], tail[-1], points)]
    starts = [x for x in starts if x < tail[-1]]
    probes = tuple(
        (x, tuple(store.probe_keys(table, KeyRange(x, stop), limit)))
        for x, stop in zip(starts, [*starts[1:], tail[-1]], strict=True)
    )
    return Sample(piece, limit, tuple(head), tuple(tail), probes)


def probes_made(sample: Sample) -> int:
    """How many store reads :func:`sample_piece` made for ``sample``."""
    return 1 if sample.complete else 2 + len(sample.probes)


def sample_pieces(
    store: Store,
    table: str,
    todo: Sequence[KeyRange],
    open_store: Callable[[], Store] | None = None,
    threads: int = SCAN_THREADS,
) -> dict[KeyRange, Sample]:
    """:func:`sample_piece` for every piece, on up to ``threads`` connections of
    ``open_store`` (on ``store`` alone without it); the same samples either way."""
    if open_store is None or threads <= 1 or len(todo) <= 1:
        return {piece: sample_piece(store, table, piece) for piece in todo}
    local = threading.local()
    opened: list[Store] = []
    lock = threading.Lock()

    def one(piece: KeyRange) -> Sample:
        conn: Store | None = getattr(local, "store", None)
        if conn is None:
            conn = local.store = open_store()
            with lock:
                opened.append(conn)
        return sample_piece(conn, table, piece)

    try:
        with ThreadPoolExecutor(
            min(threads, len(todo)), thread_name_prefix="nightfold-plan"
        ) as pool:
            return dict(zip(todo, pool.map(one, todo), strict=True))
    finally:
        for conn in opened:
            with contextlib.suppress(Exception):
                conn.close()


def load_guideposts(engine: Engine, run: RunInfo) -> tuple[list[Guidepost], str | None]:
    """The guideposts of the latest earlier night (moved onto the run's day) and
    which run lent them (for the log); ``([], None)`` on a first night."""
    with engine.connect() as conn:
        night = guidepost_repo.latest_night(
            conn,
            run.job,
            run.day,
            run.params.salt_buckets,
            lookback_days=GUIDEPOST_LOOKBACK_DAYS,
            exclude_run_id=run.id,
        )
    if night is None:
        return [], None
    return moved_guideposts(night.chunks, night.day, run.day), f"run {night.run_id} ({night.day})"


@dataclass(frozen=True)
class MapPlan:
    """The map chunks of a day and what planning them took."""

    chunks: list[PlannedChunk]
    regions: int
    pieces: int
    probed: int
    probes: int
    samples: dict[KeyRange, Sample] = field(default_factory=dict)
    """What the probes saw, by piece."""


def plan_map(
    store: Store,
    table: str,
    ranges: Sequence[KeyRange],
    chunk_rows: int,
    open_store: Callable[[], Store] | None = None,
    *,
    guideposts: Sequence[Guidepost] = (),
    max_chunks: int = MAX_MAP_CHUNKS,
    sample_all: bool = False,
) -> MapPlan:
    """The map chunks of ``ranges`` of ``table``: one region listing, then bounded
    probes of the pieces ``guideposts`` do not cover, then the pure split. With
    ``sample_all`` every piece is probed (a sharded job estimates its hot groups from
    the probes: an earlier night's cut points say where rows were, not whose), but
    the guideposts still set the cuts of the pieces they cover."""
    regions = store.region_starts(table)
    all_pieces = pieces(ranges, regions)
    todo = [p for p in all_pieces if not covered(p, guideposts)]
    samples = sample_pieces(store, table, all_pieces if sample_all else todo, open_store)
    uncovered = {p: samples[p] for p in todo}
    chunks = plan_chunks(ranges, regions, guideposts, uncovered, chunk_rows, max_chunks)
    probes = sum(probes_made(s) for s in samples.values())
    return MapPlan(chunks, len(regions) + 1, len(all_pieces), len(todo), probes, samples)


def compute_plan(
    store: Store,
    job: Job[object],
    run: RunInfo,
    open_store: Callable[[], Store] | None = None,
    *,
    engine: Engine | None = None,
    max_chunks: int = MAX_MAP_CHUNKS,
) -> Plan:
    """Split the run's day into map chunks of about ``chunk_rows`` rows, plus the
    reduce items (one per bucket), from the region boundaries, the guideposts of
    an earlier night (read through ``engine``, when given) and bounded probes of
    the pieces they do not cover (on several connections of ``open_store``)."""
    params = run.params
    ranges = day_ranges(run.day, params.salt_buckets)
    store.ensure_table(job.raw_table, ["o"])
    store.ensure_table(PARTIALS_TABLE, [PARTIAL_FAMILY])
    store.ensure_table(job.summary_table, [job.summary_family])
    guideposts, lender = load_guideposts(engine, run) if engine is not None else ([], None)
    mapped = plan_map(
        store,
        job.raw_table,
        ranges,
        params.chunk_rows,
        open_store,
        guideposts=guideposts,
        max_chunks=max_chunks,
        sample_all=job.sharded,
    )
    specs = [ChunkSpec(Stage.MAP, i, c.range) for i, c in enumerate(mapped.chunks)]
    for bucket in range(params.reduce_buckets):
        prefix = partial_prefix(run.job, run.day, run.generation, bucket)
        specs.append(ChunkSpec(Stage.REDUCE, bucket, prefix_range(prefix)))
    hot: list[str] | None = None
    if job.sharded:  # only the hot groups are split; their shards meet again in combine
        weighted = sample_weights(mapped.samples, mapped.chunks)
        hot = shards.hot_groups(job, weighted, params.chunk_rows * HOT_CHUNKS)
        if shards.has_combine(job, hot):  # no hot group: the reduce items finalize
            for bucket in range(params.reduce_buckets):
                prefix = combine_prefix(run.job, run.day, run.generation, bucket)
                specs.append(ChunkSpec(Stage.COMBINE, bucket, prefix_range(prefix)))
    sources = [n for n, used in (("guideposts", lender), ("probes", mapped.probed)) if used]
    plan = Plan(
        specs=specs,
        rows_estimate=estimate_rows(mapped.chunks),
        estimate_source="+".join(sources) or "none",
        regions=mapped.regions,
        pieces=mapped.pieces,
        probes=mapped.probes,
        hot=None if hot is None else tuple(hot),
        hot_groups=shards.encode_plan_hot(hot) if job.sharded else None,
    )
    log.info(
        "run %s: %d pieces over %d regions; %s%d pieces probed (%d reads)%s",
        run.label,
        plan.pieces,
        plan.regions,
        f"guideposts of {lender}; " if lender else "",
        mapped.probed,
        plan.probes,
        "" if hot is None else f"; {len(hot)} hot groups sharded: {', '.join(hot[:10])}",
    )
    return plan


def record_plan(conn: Connection, run: RunInfo, plan: Plan, actor: str) -> bool:
    """Record the plan and move the run to mapping, atomically; False if another
    master planned it first."""
    if not plan_repo.record_plan(conn, run.id, plan.specs, actor, plan.hot_groups):
        return False
    log.info(
        "run %s planned: %d map chunks, %d reduce items, %d combine items, ~%d rows "
        "(estimated from %s)",
        run.label,
        plan.map_chunks,
        plan.reduce_items,
        len(plan.specs) - plan.map_chunks - plan.reduce_items,
        plan.rows_estimate,
        plan.estimate_source,
    )
    return True
