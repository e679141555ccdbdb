"""A map chunk's records kept in memory instead of MySQL, for tests that drive
the executor in process: what it commits, and what a reduce then counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from nightfold.common.db.chunks import Claim
from nightfold.common.db.segments import SegmentRef, SegmentSpec


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
