"""Executing one claimed chunk: map (scan, fold, write partials by reduce
bucket) or reduce (merge one bucket's partials in chunk order, then make the
bucket's summary rows of the day exactly the merged result).

Writes are idempotent: a partial's key derives from (job, day, generation,
bucket, chunk) and the same input folds to the same bytes, so a retry or two
workers racing on an expired lease can only write the same value twice; a
reduce's puts and deletes are computed from what is stored now towards the same
target, so a redo finishes a half-applied reduce and otherwise changes nothing.

No cell exceeds the run's ``max_cell_bytes``: a group's encoded partial is
split across cells (:mod:`nightfold.worker.cells`) and rejoined by the reduce
before ``job.decode``; a summary cell above the bound fails the chunk with
:class:`CellTooLarge` naming the group and column.

A sharded job (``Job.sharded``) writes each group's shards to different reduce
buckets, its reduce items leave compacted shards for a combine stage, and the
combine items write the summaries (:mod:`nightfold.worker.combine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nightfold.common.db.chunks import Claim
from nightfold.common.errors import CellTooLarge, CorruptPartial
from nightfold.common.jobs import shards
from nightfold.common.jobs.base import Job, MapOutput, fold_rows
from nightfold.common.keys import (
    PARTIAL_FAMILY,
    PARTIALS_TABLE,
    partial_key,
    prefix_range,
    summary_key,
    summary_prefix,
)
from nightfold.common.states import Stage
from nightfold.common.store.base import Columns, Store
from nightfold.worker import cells as partial_cells
from nightfold.worker import combine
from nightfold.worker.heartbeat import LeaseKeeper
from nightfold.worker.reconcile import owned_by, reconcile


@dataclass(frozen=True)
class Result:
    rows_read: int
    rows_malformed: int
    rejects: list[tuple[bytes, str]] = field(default_factory=list)


def execute(claim: Claim, store: Store, job: Job[Any], lease: LeaseKeeper) -> Result:
    if claim.stage is Stage.MAP:
        return run_map(claim, store, job, lease)
    if claim.stage is Stage.COMBINE:
        return combine.run_combine(claim, store, job, lease)
    return run_reduce(claim, store, job, lease)


def run_map(claim: Claim, store: Store, job: Job[Any], lease: LeaseKeeper) -> Result:
    params = claim.run.params
    out: MapOutput[Any] = MapOutput()
    size = params.scan_batch
    scan = store.scan(job.raw_table, claim.key_range, batch_size=size)
    fold_rows(job, scan, out, size, lambda last: lease.tick(out.rows_read, last))
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
        (partial_key(run.job, run.day, run.generation, bucket, claim.idx), cells)
        for bucket, cells in sorted(buckets.items())
    ]
    store.put_many(PARTIALS_TABLE, rows)
    return Result(out.rows_read, out.rows_malformed, out.rejects)


def run_reduce(claim: Claim, store: Store, job: Job[Any], lease: LeaseKeeper) -> Result:
    merged: dict[str, Any] = {}
    read = 0
    last: bytes | None = None
    skip = len(PARTIAL_FAMILY) + 1
    # partial rows come in chunk order (zero-padded index), so the fold order is fixed
    for key, cells in store.scan(PARTIALS_TABLE, claim.key_range, batch_size=100):
        try:
            values = partial_cells.join((column[skip:], v) for column, v in cells.items())
        except CorruptPartial as exc:
            raise CorruptPartial(f"partial row {key!r}: {exc}") from None
        for group in sorted(values):
            partial = job.decode(values[group])
            merged[group] = job.merge_into(merged[group], partial) if group in merged else partial
        read += 1
        last = key
        lease.tick(read, key)
    if job.sharded:  # one shard of many groups: left compacted for the combine stage
        combine.write_shard_results(
            claim,
            store,
            job,
            merged,
            beat=lambda: lease.tick(read, last),
            fence=lambda: lease.tick(read, last, force=True),
        )
        return Result(read, 0)
    day = claim.run.day
    bound = claim.run.params.max_cell_bytes
    wanted = {
        summary_key(day, g): bounded(job, g, job.finalize(g, merged[g]), bound)
        for g in sorted(merged)
    }
    write_summaries(
        claim,
        store,
        job,
        wanted,
        beat=lambda: lease.tick(read, last),
        fence=lambda: lease.tick(read, last, force=True),
    )
    return Result(read, 0)


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
