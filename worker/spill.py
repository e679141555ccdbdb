"""A reduce item's merge of partials by group, with a big group reduced in shards
from local disk instead of whole in memory.

Why: the planner shards the groups it estimates hot (``common/jobs/shards.py``),
but on a night without an earlier night's guideposts its estimate can miss a
group packed into a narrow stretch of keys (probes spread in key space seldom land
in it). Such a group travels whole to one reduce item, whose memory then grows
with the group's distinct values (a merchant with 3 million customers: over
500 MiB). Spark's external maps spill to local disk for the same reason.

So a reduce item of a sharded job counts the encoded bytes of each group's
partials as they come. A group that passes the run's ``spill_bytes`` is cut into
``SPILL_SHARDS`` shards by the job's own ``split`` (each distinct value to the
shard its stable hash picks), written to one unlinked temporary file per shard,
and every later partial of it goes the same way. At the end each shard is read
back alone, merged and ``compact``ed, and the compacted shards are merged: by the
law ``Job.compact`` states (the one the combine stage relies on), finalizing
that gives the same bytes as finalizing the whole group. Memory then holds one
partial being split and one shard at a time.

The files are private to the process (created unlinked: a killed worker leaves
nothing), so they hold pickles; they live in the temporary directory (``TMPDIR``).
A job that is not sharded (no ``split``) never spills.
"""

from __future__ import annotations

import pickle
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from nightfold.common.jobs import shards
from nightfold.common.jobs.base import Job
from nightfold.common.params import RunParams

SPILL_BYTES = RunParams.spill_bytes
"""A group spills once its encoded partials in one reduce item pass this many bytes
(the run's ``spill_bytes``, 4 MiB by default: about 300,000 distinct customer ids of
merchant_daily, some 20 MiB once decoded; a merchant of a uniform day brings tens of
kilobytes)."""
SPILL_SHARDS = 17
"""Shards of a spilled group (each read back alone). A prime: a sub-group the planner
already sharded holds the values of one residue of the run's ``reduce_buckets``,
which a prime count still spreads over all its shards."""

_LENGTH = struct.Struct(">Q")


class GroupMerge:
    """The partials of one reduce item merged by (sub-)group name.

    :meth:`add` each encoded partial in the item's fixed order; :meth:`finish`
    gives ``(merged, compacted)``: the groups merged in memory, and the spilled
    ones as the merge of their compacted shards (already what ``compact`` would
    give: finalize them, or hand them to the combine stage, as they are).
    """

    def __init__(
        self,
        job: Job[Any],
        spill_bytes: int = SPILL_BYTES,
        spill_shards: int = SPILL_SHARDS,
    ) -> None:
        self.job = job
        self.spill_bytes = spill_bytes if job.sharded else 0
        self.spill_shards = spill_shards
        self.merged: dict[str, Any] = {}
        self._bytes: dict[str, int] = {}
        self._spilled: dict[str, dict[int, IO[bytes]]] = {}

    @property
    def spilled(self) -> list[str]:
        """The names of the groups this item spilled."""
        return sorted(self._spilled)

    def add(self, name: str, data: bytes) -> None:
        """Fold one encoded partial of ``name`` in."""
        job = self.job
        partial = job.decode(data)
        if name in self._spilled:
            self._write(name, partial)
            return
        merged = self.merged
        merged[name] = job.merge_into(merged[name], partial) if name in merged else partial
        if self.spill_bytes:
            size = self._bytes[name] = self._bytes.get(name, 0) + len(data)
            if size > self.spill_bytes:
                self._spilled[name] = {}
                self._write(name, merged.pop(name))

    def _write(self, name: str, partial: Any) -> None:
        group = _group(self.job, name)
        files = self._spilled[name]
        for shard, part in self.job.split(group, partial, self.spill_shards).items():
            out = files.get(shard)
            if out is None:
                # closed by close(), which finish() and the reduce's failure path call
                out = files[shard] = tempfile.TemporaryFile(prefix="nightfold-spill-")  # noqa: SIM115
            data = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
            out.write(_LENGTH.pack(len(data)))
            out.write(data)

    def finish(
        self, beat: Callable[[], None] = lambda: None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(merged, compacted)``; reads the spilled shards back one at a time (``beat``
        after each) and closes their files."""
        job = self.job
        compacted: dict[str, Any] = {}
        try:
            for name in sorted(self._spilled):
                group = _group(job, name)
                acc: Any = None
                for shard in sorted(self._spilled[name]):
                    merged_shard: Any = None
                    for part in _records(self._spilled[name][shard]):
                        merged_shard = (
                            part if merged_shard is None else job.merge_into(merged_shard, part)
                        )
                    small = job.compact(group, merged_shard)
                    acc = small if acc is None else job.merge_into(acc, small)
                    beat()
                compacted[name] = acc
        finally:
            self.close()
        return self.merged, compacted

    def __enter__(self) -> GroupMerge:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close (and so delete) the spill files; again does nothing."""
        for files in self._spilled.values():
            for out in files.values():
                out.close()


def _group(job: Job[Any], name: str) -> str:
    """The group of a sub-group name (a sharded job's names carry a shard suffix)."""
    return shards.parse_shard_group(name)[0] if job.sharded else name


def _records(out: IO[bytes]) -> Iterator[Any]:
    out.flush()
    out.seek(0)
    while head := out.read(_LENGTH.size):
        (size,) = _LENGTH.unpack(head)
        yield pickle.loads(out.read(size))  # this process's own unlinked file: trusted
