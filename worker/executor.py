"""Executing one claimed chunk: map (scan, fold, write partials by reduce
bucket, segment by segment: :mod:`nightfold.worker.checkpoint`) or reduce (merge
one bucket's committed partials in chunk order, then make the bucket's summary
rows of the day exactly the merged result).

A map segment's partial key names (bucket, chunk, seq, the segment's key span),
so two writers of one key write the same bytes, and a segment counts once MySQL
committed it (fenced), so a retry, a resumed taker or a late writer of an old
attempt never changes what counts; a reduce reads only the
committed segments. A reduce's puts and deletes are computed from what is stored
now towards the same target, so a redo finishes a half-applied reduce and
otherwise changes nothing.

No cell exceeds the run's ``max_cell_bytes``: a group's encoded partial is
split across cells (:mod:`nightfold.worker.cells`) and rejoined by the reduce
before ``job.decode``; a summary cell above the bound fails the chunk with
:class:`CellTooLarge` naming the group and column.

A sharded job (``Job.sharded``) writes each group's shards to different reduce
buckets, its reduce items leave compacted shards for a combine stage, and the
combine items write the summaries (:mod:`nightfold.worker.combine`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nightfold.common.db.chunks import Claim
from nightfold.common.db.segments import SegmentRef, SegmentSpec
from nightfold.common.errors import CellTooLarge, CorruptPartial
from nightfold.common.jobs import shards
from nightfold.common.jobs.base import Job, MapOutput
from nightfold.common.keys import (
    PARTIAL_FAMILY,
    PARTIALS_TABLE,
    parse_segment_key,
    prefix_range,
    segment_key,
    summary_key,
    summary_prefix,
)
from nightfold.common.states import Stage
from nightfold.common.store.base import Columns, Store
from nightfold.worker import cells as partial_cells
from nightfold.worker import combine
from nightfold.worker.checkpoint import ChunkIO, Lease, SegmentedMap
from nightfold.worker.reconcile import owned_by, reconcile
from nightfold.worker.spill import GroupMerge

log = logging.getLogger(__name__)

REDUCE_BATCH = 8
"""Partial rows a reduce item fetches per round trip. A row is one map segment's share
of the bucket, up to a few MB when a big group is in it (``checkpoint_rows`` rows'
worth of its distinct values): 100 rows at a time held a hot merchant's whole
bucket, 90 MB, in one worker while the reduce had barely begun."""


@dataclass(frozen=True)
class Result:
    rows_read: int
    """Rows this attempt read (a map resumed at a checkpoint reads only the rest)."""
    rows_malformed: int
    rejects: list[tuple[bytes, str]] = field(default_factory=list)
    last: SegmentSpec | None = None
    """A map's last segment: written, committed with the chunk's completion."""
    splits: list[int] = field(default_factory=list)
    """Indexes of the map chunks this attempt split off its chunk."""


def execute(claim: Claim, store: Store, job: Job[Any], lease: Lease, io: ChunkIO) -> Result:
    if claim.stage is Stage.MAP:
        return run_map(claim, store, job, lease, io)
    if claim.stage is Stage.COMBINE:
        return combine.run_combine(claim, store, job, lease)
    return run_reduce(claim, store, job, lease, io.committed())


def run_map(claim: Claim, store: Store, job: Job[Any], lease: Lease, io: ChunkIO) -> Result:
    """The chunk from its checkpoint on, in segments (:class:`SegmentedMap`)."""
    chunk = SegmentedMap(
        claim,
        store,
        job,
        lease,
        io,
        lambda out, seq, span: write_segment(claim, store, job, out, seq, span),
    )
    last, read, malformed = chunk.run()
    return Result(read, malformed, list(last.rejects), last=last, splits=chunk.splits)


def write_segment(
    claim: Claim, store: Store, job: Job[Any], out: MapOutput[Any], seq: int, span: bytes
) -> None:
    """Put ``out``'s partials as segment ``seq`` (key span ``span``) of the claim, one
    row per reduce bucket."""
    params = claim.run.params
    buckets: dict[int, dict[bytes, bytes]] = {}
    prefix = PARTIAL_FAMILY.encode() + b":"
    hot = combine.hot_groups(store, claim) if job.sharded else None
    for group, bucket, partial in shards.bucketed(job, out.partials, params.reduce_buckets, hot):
        cells = buckets.setdefault(bucket, {})
        for qualifier, piece in partial_cells.split(
            group, job.encode(partial), params.max_cell_bytes
        ):
            cells[prefix + qualifier] = piece
    run = claim.run
    rows = [
        (
            segment_key(run.job, run.day, run.generation, bucket, claim.idx, seq, span),
            cells,
        )
        for bucket, cells in sorted(buckets.items())
    ]
    store.put_many(PARTIALS_TABLE, rows)


def counts(committed: set[SegmentRef] | None, prefix_len: int) -> Callable[[bytes], bool]:
    """Whether a partial row of a reduce bucket (its prefix ``prefix_len`` bytes) counts:
    a segment's row only if MySQL committed that (chunk, seq, span); a row of the
    one-partial-per-chunk format of before segments only for a chunk without any.
    ``committed`` None counts every row: only for a caller that wrote each partial
    once itself, with no database (the bench's in-process steps)."""
    if committed is None:
        return lambda _key: True
    segmented = {ref.chunk_idx for ref in committed}

    def check(key: bytes) -> bool:
        ref = parse_segment_key(key, prefix_len)
        if ref is not None:
            return SegmentRef(*ref) in committed
        legacy = key[prefix_len:]
        return legacy.isdigit() and int(legacy) not in segmented

    return check


def run_reduce(
    claim: Claim, store: Store, job: Job[Any], lease: Lease, committed: set[SegmentRef] | None
) -> Result:
    read = 0
    last: bytes | None = None
    skip = len(PARTIAL_FAMILY) + 1
    counted = counts(committed, len(claim.key_range.start))
    # partial rows come in chunk order (zero-padded index), so the fold order is fixed;
    # rows of uncommitted segments (a killed attempt's, a fenced-out writer's) are skipped
    with GroupMerge(job, spill_bytes=claim.run.params.spill_bytes) as groups:
        for key, cells in store.scan(PARTIALS_TABLE, claim.key_range, batch_size=REDUCE_BATCH):
            if not counted(key):
                continue
            try:
                values = partial_cells.join((column[skip:], v) for column, v in cells.items())
            except CorruptPartial as exc:
                raise CorruptPartial(f"partial row {key!r}: {exc}") from None
            for group in sorted(values):
                groups.add(group, values[group])
            read += 1
            last = key
            lease.tick(read, key)
        merged, compacted = groups.finish(beat=lambda: lease.tick(read, last))
    if groups.spilled:
        log.info("%s: reduced %s in shards from local disk", claim.label, ", ".join(groups.spilled))
    if combine.has_combine(claim, job):  # one shard of many groups: compacted for combine
        combine.write_shard_results(
            claim,
            store,
            job,
            merged,
            beat=lambda: lease.tick(read, last),
            fence=lambda: lease.tick(read, last, force=True),
            compacted=compacted,
        )
        return Result(read, 0)
    if job.sharded:  # a run with no hot group: every group came whole, names suffixed
        merged = shards.whole_groups(merged)
        compacted = shards.whole_groups(compacted)
    finalize_into_summaries(
        claim,
        store,
        job,
        {**merged, **compacted},
        beat=lambda: lease.tick(read, last),
        fence=lambda: lease.tick(read, last, force=True),
    )
    return Result(read, 0)


def finalize_into_summaries(
    claim: Claim,
    store: Store,
    job: Job[Any],
    merged: dict[str, Any],
    beat: Callable[[], None],
    fence: Callable[[], None],
) -> None:
    """Finalize each whole group of the item (a reduce's, or a combine's once the
    shards met) and make the item's summary rows exactly that."""
    day = claim.run.day
    bound = claim.run.params.max_cell_bytes
    wanted = {
        summary_key(day, g): bounded(job, g, job.finalize(g, merged[g]), bound)
        for g in sorted(merged)
    }
    write_summaries(claim, store, job, wanted, beat=beat, fence=fence)


def write_summaries(
    claim: Claim,
    store: Store,
    job: Job[Any],
    wanted: dict[bytes, dict[bytes, bytes]],
    beat: Callable[[], None],
    fence: Callable[[], None] = lambda: None,
) -> None:
    """Make this reduce item's share of the day's summary rows exactly ``wanted``.

    The item owns every row of the day whose group falls in its bucket under this
    run's ``reduce_buckets``, whoever wrote it (see :mod:`worker.reconcile`): the
    day's rows are scanned (O(groups), one family), the owned ones diffed against
    ``wanted``, then changed cells are put and stale rows and cells deleted --
    puts first, so a row both generations have never looks absent meanwhile.
    """
    run = claim.run
    prefix = summary_prefix(run.day)
    owns = owned_by(job.bucket, prefix, claim.idx, run.params.reduce_buckets)
    family = job.summary_family.encode()
    stored: dict[bytes, Columns] = {}
    day_rows = prefix_range(prefix)
    for key, cells in store.scan(job.summary_table, day_rows, columns=[family]):
        if owns(key):
            stored[key] = cells
        beat()
    changes = reconcile(stored, wanted)
    fence()  # still ours, and the run still live: else an older generation could write late
    store.put_many(job.summary_table, changes.puts)
    store.delete_cells(job.summary_table, changes.deletes)


def bounded(job: Job[Any], group: str, cells: dict[bytes, bytes], bound: int) -> dict[bytes, bytes]:
    """``cells`` unchanged, or :class:`CellTooLarge` if one is above ``bound`` (a job bug)."""
    for column, value in cells.items():
        if len(value) > bound:
            raise CellTooLarge(
                f"job {job.name}: summary cell {column.decode(errors='replace')!r} of group "
                f"{group!r} is {len(value)} bytes, above max_cell_bytes={bound}"
            )
    return cells
