"""The store seam: what nightfold needs from a sorted key-value table store.

Kept as small as httpx's transport: scan a key range in key order, put rows,
delete rows or cells, report region boundaries, read a bounded handful of keys
(the planner's probes), and a little housekeeping. Two
backends implement it: ``hbase.py`` (happybase over the HBase Thrift1 gateway,
production) and ``local.py`` (a SQLite file with the same sorted-key scan
semantics, embedded).
Backends map their library's errors to :class:`ServiceUnavailable` when waiting
may cure them (an outage: the chunk is released uncounted) and to
:class:`StoreRejected` when the store answered a deterministic "no" (the attempt
counts, so a chunk that cannot be written dies instead of looping).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

from nightfold.common.keys import KeyRange

Columns = Mapping[bytes, bytes]
"""One row's cells, ``b"family:qualifier" -> value``."""

Row = tuple[bytes, Columns]

CellDelete = tuple[bytes, Sequence[bytes] | None]
"""What to delete of one row: ``(key, None)`` the whole row, ``(key, [b"fam:qual", ...])``
just those columns (every version). Deleting what is not there is a no-op."""


class Store(Protocol):
    """A sorted table store (HBase or the embedded local store)."""

    def ensure_table(self, table: str, families: Sequence[str]) -> None:
        """Create ``table`` with column ``families`` unless it exists (idempotent)."""

    def scan(
        self,
        table: str,
        key_range: KeyRange,
        *,
        columns: Sequence[bytes] | None = None,
        batch_size: int = 1000,
        keys_only: bool = False,
        ahead: bool = False,
    ) -> Iterator[Row]:
        """Yield rows of ``key_range`` in ascending key order, fetched ``batch_size`` at a time.

        ``keys_only`` yields empty column maps (cheap sampling for the planner).
        ``ahead`` asks for the next batches to be fetched while the caller works on
        this one (a long scan that folds as it goes: the map); a backend may ignore it.
        """
        ...

    def put_many(self, table: str, rows: Iterable[Row], *, batch_size: int = 1000) -> int:
        """Write rows (idempotent for identical input); returns how many were written."""
        ...

    def region_starts(self, table: str) -> list[bytes]:
        """Start keys of the table's regions after the first, sorted (cut points)."""
        ...

    def probe_keys(
        self, table: str, key_range: KeyRange, limit: int, *, reverse: bool = False
    ) -> list[bytes]:
        """At most ``limit`` keys of ``key_range``: its first ones in ascending order,
        or with ``reverse`` its last ones in descending order.

        One bounded read whatever the range holds (a scan that stops at ``limit``):
        what the planner uses to look inside a region without reading it. A
        missing table raises like :meth:`scan`.
        """
        ...

    def delete_range(self, table: str, key_range: KeyRange) -> int:
        """Delete every row in ``key_range``; returns how many were deleted."""
        ...

    def delete_cells(
        self, table: str, deletes: Iterable[CellDelete], *, batch_size: int = 1000
    ) -> int:
        """Delete whole rows or some of their columns (idempotent); returns how many
        row deletes were sent. Why it exists: a rerun's reduce must remove the summary
        rows and cells the new generation no longer has."""
        ...

    def drop_table(self, table: str) -> None:
        """Drop ``table`` if it exists."""

    def close(self) -> None:
        """Release connections."""


T = TypeVar("T")


def in_batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` as lists of at most ``size``, in order: what every backend's bulk
    write sends per call or per transaction (``itertools.batched`` from 3.12 on)."""
    if size < 1:
        raise ValueError("batch_size must be >= 1")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
