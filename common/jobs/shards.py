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
exactly one shard of every group (the most any number of shards could spread
them), and a group with few distinct values has few non-empty shards.

Sub-group names: ``<group> 0x1F <shard:%04d>``. Every sub-group of a sharded job
carries the suffix, so the last 0x1F splits any name unambiguously, whatever the
group's own characters.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from nightfold.common.errors import CorruptPartial
from nightfold.common.jobs.base import Job

P = TypeVar("P")

SHARD_SEP = "\x1f"


def shard_of(value: bytes, shards: int) -> int:
    """The shard of one value: a stable hash (never Python's salted ``hash``)."""
    return zlib.crc32(value) % shards


def shard_group(group: str, shard: int) -> str:
    """The sub-group name of ``group``'s shard ``shard``."""
    if shard < 0:
        raise ValueError(f"shard must be >= 0, got {shard}")
    return f"{group}{SHARD_SEP}{shard:04d}"


def parse_shard_group(name: str) -> tuple[str, int]:
    """``(group, shard)`` of a sub-group name; :class:`CorruptPartial` if it is not one."""
    group, sep, shard = name.rpartition(SHARD_SEP)
    if not sep or len(shard) < 4 or not (shard.isascii() and shard.isdigit()):
        raise CorruptPartial(f"{name!r} is not a sharded sub-group name")
    if shard != f"{int(shard):04d}":
        raise CorruptPartial(f"{name!r} is not a sharded sub-group name")
    return group, int(shard)


def shard_bucket(job: Job[Any], group: str, shard: int, buckets: int) -> int:
    """The reduce bucket of a group's shard: the group's bucket, shifted by the shard,
    so a group's shards ``0..buckets-1`` fall in ``buckets`` different reduce items."""
    return (job.bucket(group, buckets) + shard) % buckets


def bucketed(job: Job[P], partials: Mapping[str, P], buckets: int) -> Iterator[tuple[str, int, P]]:
    """``(name, reduce bucket, partial)`` of what a map chunk writes.

    A job that is not sharded writes every group whole, in its own bucket; a
    sharded one writes every non-empty shard of every group as its sub-group.
    """
    for group, partial in partials.items():
        if not job.sharded:
            yield group, job.bucket(group, buckets), partial
            continue
        for shard, part in sorted(job.split(group, partial, buckets).items()):
            if not 0 <= shard < buckets:
                raise ValueError(f"job {job.name}: split gave shard {shard} of {buckets}")
            yield shard_group(group, shard), shard_bucket(job, group, shard, buckets), part


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
