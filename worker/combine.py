"""The two worker steps of a sharded job (:mod:`nightfold.common.jobs.shards`):
the end of a reduce item, which leaves each merged shard compacted for the
combine item of its group's bucket, and the combine item, which merges each
group's compacted shards and reconciles the bucket's summary rows exactly as an
unsharded reduce does (``executor.write_summaries``).

Why a stage of its own: a reduce item holds one shard of many groups, never a
whole group, so no reduce item can write a group's summary row; the combine
items hold every group of their bucket, but only compacted shards (a count, a
top ``k``), so their memory grows with the number of groups, not with any
group's distinct values.

Idempotent like the rest: reduce item ``r`` writes its results for combine item
``b`` at ``combine_key(job, day, generation, b, r)``, derived only from the run and
the two items, and the same merged shards compact to the same bytes, so a redo
rewrites the same cells; the combine is a reduce over those rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nightfold.common.db.chunks import Claim
from nightfold.common.errors import CorruptPartial
from nightfold.common.jobs import shards
from nightfold.common.jobs.base import Job
from nightfold.common.keys import (
    HOT_COLUMN,
    PARTIAL_FAMILY,
    PARTIALS_TABLE,
    KeyRange,
    combine_key,
    hot_groups_key,
)
from nightfold.common.store.base import Store
from nightfold.worker import cells as partial_cells
from nightfold.worker import executor
from nightfold.worker.checkpoint import Lease


def hot_groups(store: Store, claim: Claim) -> frozenset[str] | None:
    """The run's hot groups (None: shard every group): as recorded with the plan,
    or, for a run planned before they were recorded in MySQL, as that planner
    left them in HBase."""
    run = claim.run
    if run.hot_groups is not None:
        return shards.decode_plan_hot(run.hot_groups)
    key = hot_groups_key(run.job, run.day, run.generation)
    for found, cells in store.scan(PARTIALS_TABLE, KeyRange(key, key + b"\x00")):
        if found == key and HOT_COLUMN in cells:
            return shards.decode_hot(cells[HOT_COLUMN])
    return None


def has_combine(claim: Claim, job: Job[Any]) -> bool:
    """Whether the claim's run has a combine stage, from the list its plan recorded
    (a run planned before the list was recorded has one if its job is sharded)."""
    if claim.run.hot_groups is None:
        return job.sharded
    return shards.has_combine(job, shards.decode_plan_hot(claim.run.hot_groups))


def write_shard_results(
    claim: Claim,
    store: Store,
    job: Job[Any],
    merged: dict[str, Any],
    beat: Callable[[], None],
    fence: Callable[[], None] = lambda: None,
    compacted: Mapping[str, Any] | None = None,
) -> None:
    """End of a sharded reduce item: every merged sub-group compacted (``compacted``:
    sub-groups that already are, the ones the item spilled), encoded, split into
    bounded cells, and put in the row of its group's combine item (after ``fence``:
    a claim lost or a run cancelled meanwhile writes nothing)."""
    run = claim.run
    params = run.params
    prefix = PARTIAL_FAMILY.encode() + b":"
    rows: dict[int, dict[bytes, bytes]] = {}
    ready = [(n, shards.parse_shard_group(n)[0], p) for n, p in (compacted or {}).items()]
    for name, group, part in sorted([*shards.compacted(job, merged), *ready], key=_name):
        cells = rows.setdefault(job.bucket(group, params.reduce_buckets), {})
        for qualifier, piece in partial_cells.split(name, job.encode(part), params.max_cell_bytes):
            cells[prefix + qualifier] = piece
        beat()
    fence()
    store.put_many(
        PARTIALS_TABLE,
        [
            (combine_key(run.job, run.day, run.generation, bucket, claim.idx), cells)
            for bucket, cells in sorted(rows.items())
        ],
    )


def _name(item: tuple[str, str, Any]) -> str:
    return item[0]


def run_combine(claim: Claim, store: Store, job: Job[Any], lease: Lease) -> executor.Result:
    """One combine item: merge each group's compacted shards (rows in reduce-item
    order), finalize, and make the bucket's summary rows exactly the result."""
    read = 0
    last: bytes | None = None
    skip = len(PARTIAL_FAMILY) + 1

    def decoded() -> Any:
        nonlocal read, last
        for key, cells in store.scan(PARTIALS_TABLE, claim.key_range, batch_size=100):
            try:
                values = partial_cells.join((column[skip:], v) for column, v in cells.items())
            except CorruptPartial as exc:
                raise CorruptPartial(f"combine row {key!r}: {exc}") from None
            for name in sorted(values):
                yield name, job.decode(values[name])
            read += 1
            last = key
            lease.tick(read, key)

    merged = shards.combine(job, decoded())
    executor.finalize_into_summaries(
        claim,
        store,
        job,
        merged,
        beat=lambda: lease.tick(read, last),
        fence=lambda: lease.tick(read, last, force=True),
    )
    return executor.Result(read, 0)
