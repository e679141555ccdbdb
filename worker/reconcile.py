"""What a reduce item must write and delete so its share of a day's summary rows
is exactly the new generation's: a pure function of the rows already stored and
the rows just computed.

Why: the reduce used to only put cells, so a rerun left behind what the new
generation no longer has (a merchant whose rows were deleted kept its whole row,
a merchant with no valid order left kept its old ``min/max/...`` cells). Each
reduce item r of R owns every summary row ``day|group`` whose group hashes to
bucket r under the *current* run's R, whatever generation wrote it, so the R
items together reconcile the whole day and never touch each other's rows.

Only changed cells are put, so an idempotent redo (a retried or taken-over
reduce item) writes and deletes nothing; a redo after a partial apply finishes it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nightfold.common.store.base import CellDelete, Columns, Row

Rows = Mapping[bytes, Columns]
"""Row key -> its cells."""


@dataclass(frozen=True)
class Changes:
    """The writes that turn the stored rows into the wanted ones."""

    puts: list[Row] = field(default_factory=list)
    """Rows with only their new or changed cells, in key order."""
    deletes: list[CellDelete] = field(default_factory=list)
    """``(key, None)`` for rows that must go, ``(key, columns)`` for cells that must
    go from rows that stay; in key order."""

    @property
    def empty(self) -> bool:
        return not self.puts and not self.deletes


def reconcile(stored: Rows, wanted: Rows) -> Changes:
    """The puts and deletes after which the owned rows equal ``wanted`` exactly.

    ``stored`` must hold only the rows this reduce item owns. A wanted row
    without cells cannot exist in the store, so it counts as absent.
    """
    puts: list[Row] = []
    deletes: list[CellDelete] = []
    for key in sorted(stored.keys() | wanted.keys()):
        have = stored.get(key, {})
        want = wanted.get(key, {})
        if not want:
            if have:
                deletes.append((key, None))
            continue
        changed = {col: val for col, val in sorted(want.items()) if have.get(col) != val}
        if changed:
            puts.append((key, changed))
        gone = sorted(col for col in have if col not in want)
        if gone:
            deletes.append((key, gone))
    return Changes(puts, deletes)


def owned_by(
    bucket_of: Callable[[str, int], int], prefix: bytes, bucket: int, buckets: int
) -> Callable[[bytes], bool]:
    """Whether a summary row key (``prefix + group``) belongs to reduce item ``bucket``.

    ``bucket_of`` is the job's ``bucket``. A group that is not UTF-8 (no job
    writes one, but something else might have) is owned by the CRC32 of its
    bytes, so every row of the day still has exactly one owner.
    """

    def owns(key: bytes) -> bool:
        raw = key[len(prefix) :]
        try:
            group = raw.decode()
        except UnicodeDecodeError:
            return zlib.crc32(raw) % buckets == bucket
        return bucket_of(group, buckets) == bucket

    return owns
