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
    sharded: ClassVar[bool] = False
    """Whether a group's partial is split by value hash (``split``) so that no reduce
    item holds a whole group: each reduce item merges one shard of every group,
    ``compact``s it, and a combine stage merges a group's compacted shards and
    ``finalize``s it (:mod:`nightfold.common.jobs.shards`, docs/jobs.md)."""

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

    groups_from_keys: ClassVar[bool] = False
    """Whether :meth:`group_of_key` tells a raw row's group from its key alone: then
    the planner counts groups in the keys it probes and only the big ones (about
    ``chunk_rows`` rows or more) are sharded; otherwise a sharded job shards all."""

    def group_of_key(self, key: bytes) -> str | None:
        """The group of the raw row at ``key`` (None when the key does not say)."""
        return None

    sketched: ClassVar[frozenset[str]] = frozenset()
    """Summary fields (``s:<field>``) that are estimates from a mergeable sketch
    (``nightfold.sketches``), by the job's choice: each has a ``<field>_bounds``
    cell beside it, ``[lo, hi]``, and ``nightfold verify`` checks that the exact
    value (from :meth:`exact_twin`) lies within them instead of comparing bytes.
    Every other field is exact and compared byte for byte."""

    def exact_twin(self) -> Job[Any]:
        """The job that computes every sketched field exactly, under the same field
        names (no ``_bounds`` cells): ``nightfold verify``'s oracle. A job without
        sketched fields is its own twin."""
        return self

    def merge_into(self, acc: P, other: P) -> P:
        """Fold ``other`` into ``acc`` and return the result; a reducer that owns ``acc``
        (a freshly decoded partial) calls this, so a job may override it to update
        ``acc`` in place instead of copying it (the default is :meth:`merge`)."""
        return self.merge(acc, other)

    def split(self, group: str, partial: P, shards: int) -> Mapping[int, P]:
        """A sharded job's partial cut into its shards ``0 <= s < shards``.

        Each value whose statistic must stay exact (a distinct id, a per-id sum)
        goes to the one shard its stable hash picks (:func:`shards.shard_of`), so
        a shard holds about ``1/shards`` of the group's distinct values; the
        group-wide scalars (counts, sums, histograms of small domains) go to
        shard 0, which is therefore always present. Must commute with merge:
        ``split(merge(a, b))[s] == merge(split(a)[s], split(b)[s])``.
        """
        raise NotImplementedError(f"job {self.name} is sharded but does not split")

    def compact(self, group: str, partial: P) -> P:
        """One shard, fully merged, reduced to what ``finalize`` needs from it.

        For example its distinct ids replaced by their count (shards hold disjoint
        ids, so counts add) and its per-id sums cut to the shard's top ``k`` (an
        id lives in one shard, so the group's top ``k`` is among the shards'
        tops). The law: ``finalize(g, merge of compact(g, shard) over shards) ==
        finalize(g, whole partial)``, byte for byte. The default keeps it whole.
        """
        return partial

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
