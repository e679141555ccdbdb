"""A map chunk's records kept in memory instead of MySQL, for tests that drive
the executor in process: what it commits, and what a reduce then counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nightfold.common.db.chunks import Claim
from nightfold.common.db.runs import RunInfo
from nightfold.common.db.segments import SegmentRef, SegmentSpec
from nightfold.common.jobs.base import Job
from nightfold.common.keys import combine_prefix, partial_prefix, prefix_range
from nightfold.common.states import Stage
from nightfold.common.store.base import Store
from nightfold.worker.executor import execute


class NoLease:
    """A lease that never beats anywhere (split requests can be set by hand)."""

    split_requested = False

    def tick(self, rows_read: int, last_key: bytes | None, *, force: bool = False) -> None:
        pass


@dataclass
class MemoryIO:
    """:class:`~nightfold.worker.checkpoint.ChunkIO` in memory, shared by the chunks
    of one test (``claim`` is switched per chunk). ``finish`` commits a map's last
    segment as the processor does with the completion."""

    claim: Claim | None = None
    segments: dict[tuple[int, int], tuple[int, SegmentSpec]] = field(default_factory=dict)
    """(chunk idx, seq) -> (attempt, segment)."""
    splits: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)

    def commit(self, seg: SegmentSpec) -> None:
        assert self.claim is not None
        key = (self.claim.idx, seg.seq)
        assert key not in self.segments, f"segment {key} committed twice"
        self.segments[key] = (self.claim.attempt, seg)

    def finish(self, seg: SegmentSpec | None) -> None:
        if seg is not None:
            self.commit(seg)

    def split(self, end: bytes, cut: bytes) -> int | None:
        assert self.claim is not None
        self.splits.append((self.claim.idx, end, cut))
        return 1000 + len(self.splits)

    def decline_split(self, reason: str) -> None:
        self.declined.append(reason)

    def committed(self) -> set[SegmentRef]:
        return {SegmentRef(idx, seq, s.span) for (idx, seq), (_, s) in self.segments.items()}

    def rows(self, idx: int) -> int:
        return sum(s.rows_read for (i, _), (_, s) in self.segments.items() if i == idx)


def reduce_day(store: Store, job: Job[Any], run: RunInfo, io: MemoryIO, buckets: int) -> None:
    """Every reduce item of ``run`` over what ``io`` committed, then (a sharded job)
    every combine item: the rest of the day after its maps, in process."""
    stages = [Stage.REDUCE, Stage.COMBINE] if job.sharded else [Stage.REDUCE]
    for stage in stages:
        for bucket in range(buckets):
            at = (partial_prefix if stage is Stage.REDUCE else combine_prefix)(
                run.job, run.day, run.generation, bucket
            )
            c = Claim(1, run, stage, bucket, prefix_range(at), "r", 1)
            execute(c, store, job, NoLease(), io)
