"""Sharded groups: the pure part of keeping one big group out of any one worker.

Why: a reduce item merges whole groups, so a group's distinct values (a big
merchant's customers and products) would all sit in one process, and its memory
would grow with that group alone. A job that declares ``sharded = True`` has each
map chunk cut every group's partial by a stable hash of the values
(``Job.split``): shard ``s`` of group ``g`` travels as the sub-group
``g 0x1F ssss`` to reduce bucket ``(bucket(g) + s) % R``, so the ``R`` shards of a
group land in ``R`` different reduce items and each item holds about ``1/R`` of
every group. A reduce item merges its sub-groups, ``compact``s each one to what
``finalize`` needs (a count instead of a set, a top ``k`` instead of every sum)
and leaves it for the combine item of the group's own bucket, which merges a
group's compacted shards and ``finalize``s it. Exactness holds when the job obeys
the law stated on ``Job.compact`` (distinct counts add across disjoint shards;
the top ``k`` of a group is among its shards' tops); the summaries are then
byte-identical to a plain one-pass recomputation.

The number of shards is the run's ``reduce_buckets``: every reduce item holds
exactly one shard of every sharded group (the most any number of shards could
spread them).

Only the groups that need it are sharded: splitting a small group costs up to
``R`` small partials per chunk instead of one. A job that can tell a row's group
from its key (``Job.group_of_key``) lets the planner count groups in the keys it
probes anyway; the groups estimated at ``chunk_rows`` rows or more are *hot*
(:func:`hot_groups`), the list is written once per run beside its partials
(``keys.hot_groups_key``) before the plan is recorded, and every map chunk
shards exactly those and writes the others whole (the sub-group ``<group> 0x1F
w``), so a group is cut the same way in every chunk. Without the list (a job
whose keys do not tell the group, or a run planned without it) every group is
sharded. Either way the result is exact; the list only decides where memory goes.

Sub-group names: ``<group> 0x1F <shard:%04d>`` or ``<group> 0x1F w``. Every
sub-group of a sharded job carries a suffix, so the last 0x1F splits any name
unambiguously, whatever the group's own characters.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from nightfold.common.errors import CorruptPartial
from nightfold.common.jobs.base import Job

P = TypeVar("P")

SHARD_SEP = "\x1f"
WHOLE = "w"
"""The suffix of a group a sharded job writes whole (not hot)."""


def shard_of(value: bytes, shards: int) -> int:
    """The shard of one value: a stable hash (never Python's salted ``hash``)."""
    return zlib.crc32(value) % shards


def shard_group(group: str, shard: int) -> str:
    """The sub-group name of ``group``'s shard ``shard``."""
    if shard < 0:
        raise ValueError(f"shard must be >= 0, got {shard}")
    return f"{group}{SHARD_SEP}{shard:04d}"


def whole_group(group: str) -> str:
    """The sub-group name of a group written whole by a sharded job."""
    return f"{group}{SHARD_SEP}{WHOLE}"


def parse_shard_group(name: str) -> tuple[str, int | None]:
    """``(group, shard)`` of a sub-group name (shard ``None``: the whole group);
    :class:`CorruptPartial` if it is not one."""
    group, sep, shard = name.rpartition(SHARD_SEP)
    if sep and shard == WHOLE:
        return group, None
    if not sep or len(shard) < 4 or not (shard.isascii() and shard.isdigit()):
        raise CorruptPartial(f"{name!r} is not a sharded sub-group name")
    if shard != f"{int(shard):04d}":
        raise CorruptPartial(f"{name!r} is not a sharded sub-group name")
    return group, int(shard)


def shard_bucket(job: Job[Any], group: str, shard: int, buckets: int) -> int:
    """The reduce bucket of a group's shard: the group's bucket, shifted by the shard,
    so a group's shards ``0..buckets-1`` fall in ``buckets`` different reduce items."""
    return (job.bucket(group, buckets) + shard) % buckets


def bucketed(
    job: Job[P], partials: Mapping[str, P], buckets: int, hot: Collection[str] | None = None
) -> Iterator[tuple[str, int, P]]:
    """``(name, reduce bucket, partial)`` of what a map chunk writes.

    A job that is not sharded writes every group whole, in its own bucket; a
    sharded one writes every non-empty shard of every ``hot`` group (of every
    group when ``hot`` is None) as its sub-group, and the others whole.
    """
    for group, partial in partials.items():
        if not job.sharded:
            yield group, job.bucket(group, buckets), partial
            continue
        if hot is not None and group not in hot:
            yield whole_group(group), job.bucket(group, buckets), partial
            continue
        for shard, part in sorted(job.split(group, partial, buckets).items()):
            if not 0 <= shard < buckets:
                raise ValueError(f"job {job.name}: split gave shard {shard} of {buckets}")
            yield shard_group(group, shard), shard_bucket(job, group, shard, buckets), part


def whole_groups(merged: Mapping[str, P]) -> dict[str, P]:
    """Group -> partial of a reduce item of a run without a combine stage, where every
    group travelled whole; :class:`CorruptPartial` on a shard (its other shards are
    in other items: finalizing it here would be wrong)."""
    out: dict[str, P] = {}
    for name, part in merged.items():
        group, shard = parse_shard_group(name)
        if shard is not None:
            raise CorruptPartial(f"{name!r}: a shard in a run planned without a combine stage")
        out[group] = part
    return out


def compacted(job: Job[P], merged: Mapping[str, P]) -> Iterator[tuple[str, str, P]]:
    """``(sub-group name, group, compacted shard)`` of one reduce item's merged sub-groups,
    in name order."""
    for name in sorted(merged):
        group, _shard = parse_shard_group(name)
        yield name, group, job.compact(group, merged[name])


def combine(job: Job[P], shards: Iterable[tuple[str, P]]) -> dict[str, P]:
    """Group -> the merge of its compacted shards, from ``(sub-group name, shard)`` pairs."""
    out: dict[str, P] = {}
    for name, part in shards:
        group, _shard = parse_shard_group(name)
        out[group] = job.merge_into(out[group], part) if group in out else part
    return out


def hot_groups(
    job: Job[Any], weighted_keys: Iterable[tuple[bytes, float]], threshold_rows: float
) -> list[str] | None:
    """The groups estimated at ``threshold_rows`` rows or more, sorted, from sampled
    keys each standing for ``weight`` rows of the day; None when the job cannot tell
    a group from a key (then every group is sharded)."""
    if not job.groups_from_keys:
        return None
    rows: dict[str, float] = {}
    for key, weight in weighted_keys:
        group = job.group_of_key(key)
        if group is not None:
            rows[group] = rows.get(group, 0.0) + weight
    return sorted(g for g, n in rows.items() if n >= threshold_rows)


def encode_hot(groups: list[str]) -> bytes:
    """The hot list's one cell: compact JSON of the sorted names."""
    return json.dumps(sorted(groups), separators=(",", ":")).encode()


EVERY_GROUP = "*"
"""The recorded hot list of a run whose job cannot tell groups from keys: shard them all."""


def encode_plan_hot(hot: Sequence[str] | None) -> str:
    """The plan's hot list as ``runs.hot_groups`` keeps it: the JSON names, or
    ``EVERY_GROUP`` for None (every group sharded)."""
    return EVERY_GROUP if hot is None else encode_hot(list(hot)).decode()


@functools.lru_cache(maxsize=8)
def decode_plan_hot(text: str) -> frozenset[str] | None:
    """Inverse of :func:`encode_plan_hot`; :class:`CorruptPartial` on anything else.
    Cached: every segment of every chunk of a run asks for the same list."""
    return None if text == EVERY_GROUP else decode_hot(text.encode())


def has_combine(job: Job[Any], hot: Collection[str] | None) -> bool:
    """Whether a run of ``job`` planned with ``hot`` has a combine stage: only if some
    group is sharded. With no hot group every group travels whole to its own
    bucket, so the reduce items finalize them directly (the planner plans no
    combine items and the workers write summaries at reduce, from the same list)."""
    return job.sharded and (hot is None or len(hot) > 0)


def decode_hot(data: bytes) -> frozenset[str]:
    try:
        names = json.loads(data)
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError("not a list of names")
    except ValueError as exc:
        raise CorruptPartial(f"hot groups cell: {exc}") from None
    return frozenset(names)


def finalize_sharded(job: Job[P], group: str, partial: P, buckets: int) -> dict[bytes, bytes]:
    """A group's summary cells the sharded way in one process: split, compact each
    shard, merge the compacted shards, finalize. What a test (or a user checking
    their job's law) compares with ``job.finalize(group, partial)``."""
    parts = job.split(group, partial, buckets)
    compact = [
        (shard_group(group, s), job.decode(job.encode(job.compact(group, p))))
        for s, p in sorted(parts.items())
    ]
    return job.finalize(group, combine(job, compact)[group])
