"""The job API: what a chunk computes, as plain Python behind a small class.

A job folds raw rows into per-group partials (``map_rows``), merges partials
associatively and commutatively (``merge``), encodes them to canonical bytes
(``encode`` / ``decode``) and turns a fully merged partial into summary cells
(``finalize``). Because merge is associative and commutative and the encoding
canonical, the summaries are byte-identical whatever the chunking, the worker
count, retries or order. Jobs register by name; third-party jobs through the
``nightfold.jobs`` entry-point group.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from nightfold.common.store.base import in_batches

P = TypeVar("P")


@dataclass
class MapOutput(Generic[P]):
    """What one chunk's fold produced: partials by group, row counts, and the
    malformed rows' keys with their reasons (quarantined, never dropped)."""

    partials: dict[str, P] = field(default_factory=dict)
    rows_read: int = 0
    rows_malformed: int = 0
    rejects: list[tuple[bytes, str]] = field(default_factory=list)


class Job(ABC, Generic[P]):
    """Base class of every nightfold job."""

    name: ClassVar[str]
    raw_table: ClassVar[str] = "nightfold_raw"
    summary_table: ClassVar[str] = "nightfold_summary"
    summary_family: ClassVar[str] = "s"

    @abstractmethod
    def map_rows(
        self, rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]], out: MapOutput[P]
    ) -> None:
        """Fold a batch of raw rows into ``out`` (called once per scan batch)."""

    @abstractmethod
    def merge(self, a: P, b: P) -> P:
        """Combine two partials of the same group; associative and commutative."""

    @abstractmethod
    def encode(self, partial: P) -> bytes:
        """Canonical bytes of a partial: equal partials give equal bytes."""

    @abstractmethod
    def decode(self, data: bytes) -> P:
        """Inverse of :meth:`encode`."""

    @abstractmethod
    def finalize(self, group: str, partial: P) -> dict[bytes, bytes]:
        """The summary cells (``b"s:field" -> canonical bytes``) of one fully merged group."""

    def bucket(self, group: str, buckets: int) -> int:
        """The reduce bucket of a group: a stable hash, never Python's salted ``hash``."""
        return zlib.crc32(group.encode()) % buckets


def fold_rows(
    job: Job[Any],
    rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]],
    out: MapOutput[Any],
    batch_size: int,
    after_batch: Callable[[bytes], None] | None = None,
) -> None:
    """Feed ``rows`` to ``job.map_rows``, ``batch_size`` at a time, into ``out``.

    The one fold of a scan: a map chunk, ``nightfold verify``'s oracle and the
    bench's bare loop all call ``map_rows`` once per scan batch, so they fold the
    same batches. ``after_batch`` gets each batch's last key (a map chunk beats its
    lease there, recording its progress).
    """
    for batch in in_batches(rows, batch_size):
        job.map_rows(batch, out)
        if after_batch is not None:
            after_batch(batch[-1][0])
