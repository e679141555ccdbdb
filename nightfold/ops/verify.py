"""The oracle: recompute a day's summaries the simplest possible way and compare.

Why it exists: the pipeline (chunking, leases, retries, the shuffle through the
partials table, merge/encode/decode, the reduce) has many ways to lose, double
or reorder work. This module uses none of it -- no master, worker, splitter or
partials -- only a plain scan of the day's raw ranges in one process, folded by
the job's ``map_rows`` into a single :class:`MapOutput` (so not even ``merge``,
``encode`` or ``decode`` run) and ``finalize`` per group. If the stored
summaries equal these byte for byte, the pipeline did its job.

A job's *sketched* fields (``Job.sketched``: estimates it chose to keep in
constant memory) are the exception: the oracle is the job's ``exact_twin``,
which computes them exactly, and a stored estimate passes when the exact value
lies within the ``[lo, hi]`` of its ``<field>_bounds`` cell.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nightfold.common.jobs.base import Job, MapOutput, fold_rows
from nightfold.common.keys import SEP, day_ranges, day_token, prefix_range
from nightfold.common.store.base import Row, Store

Summaries = dict[str, dict[bytes, bytes]]
"""group -> summary cells (``b"s:field" -> bytes``)."""


@dataclass(frozen=True)
class Difference:
    """One cell that differs; ``None`` on a side means the cell (or whole group) is missing."""

    group: str
    field: bytes
    expected: bytes | None
    stored: bytes | None
    bounds: bytes | None = None
    """A sketched field's stored ``[lo, hi]`` that does not hold the exact value."""

    @property
    def kind(self) -> str:
        if self.bounds is not None:
            return "out of bounds"
        if self.stored is None:
            return "missing"
        if self.expected is None:
            return "extra"
        return "different"

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.group} {self.field.decode(errors='replace')}: "
            f"expected {self.expected!r}, stored {self.stored!r}"
            + (f" within {self.bounds!r}" if self.bounds is not None else "")
        )


@dataclass
class VerifyReport:
    """What :func:`verify_day` found."""

    job: str
    day: dt.date
    groups_expected: int
    groups_stored: int
    groups_compared: int
    rows_read: int
    """Rows the oracle scanned (its own count)."""
    rows_malformed: int
    """Rows the job's ``map_rows`` counted as malformed."""
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _fold(
    store: Store, job: Job[Any], day: dt.date, salt_buckets: int, batch_size: int
) -> tuple[MapOutput[Any], int]:
    """All of the day's raw rows folded into one MapOutput, and how many rows were scanned.

    One ``map_rows`` call per scan batch, as a worker does; the row count is the
    oracle's own, not the job's.
    """
    out: MapOutput[Any] = MapOutput()
    scanned = 0

    def counted(rows: Iterable[Row]) -> Iterator[Row]:
        nonlocal scanned
        for row in rows:
            scanned += 1
            yield row

    for key_range in day_ranges(day, salt_buckets):
        rows = store.scan(job.raw_table, key_range, batch_size=batch_size)
        fold_rows(job, counted(rows), out, batch_size)
    return out, scanned


def _finalize(job: Job[Any], out: MapOutput[Any]) -> Summaries:
    return {group: job.finalize(group, out.partials[group]) for group in sorted(out.partials)}


def compute_expected(
    store: Store, job: Job[Any], day: dt.date, salt_buckets: int, *, batch_size: int = 2000
) -> Summaries:
    """The summaries the pipeline should have written for ``day``, by brute force
    (sketched fields exactly: their estimates are checked against these by bounds)."""
    twin = job.exact_twin()
    out, _ = _fold(store, twin, day, salt_buckets, batch_size)
    return _finalize(twin, out)


def read_stored(store: Store, job: Job[Any], day: dt.date) -> Summaries:
    """The summaries actually in ``job.summary_table`` for ``day`` (rows ``YYYYMMDD|group``)."""
    prefix = day_token(day) + SEP
    family = job.summary_family.encode()
    return {
        key[len(prefix) :].decode(): dict(cells)
        for key, cells in store.scan(job.summary_table, prefix_range(prefix), columns=[family])
    }


BOUNDS_SUFFIX = b"_bounds"


def within(exact: bytes, bounds: bytes) -> bool:
    """Whether a decimal ``exact`` lies within the JSON ``[lo, hi]`` of ``bounds``."""
    try:
        lo, hi = json.loads(bounds)
        return bool(float(lo) <= float(exact) <= float(hi))
    except (ValueError, TypeError):
        return False


def compare(
    expected: Summaries, stored: Summaries, sketched: Iterable[str] = ()
) -> list[Difference]:
    """Every cell that is missing, extra or different, sorted by group and field; a
    sketched field (``s:<field>`` of ``sketched``) differs only when its stored
    ``_bounds`` cell is missing or does not hold the expected (exact) value."""
    approx = {b"s:" + f.encode() for f in sketched}
    bounds = {column + BOUNDS_SUFFIX for column in approx}
    differences: list[Difference] = []
    for group in sorted(expected.keys() | stored.keys()):
        want = expected.get(group, {})
        have = stored.get(group, {})
        for name in sorted(want.keys() | have.keys()):
            if name in bounds and name[: -len(BOUNDS_SUFFIX)] in (want.keys() | have.keys()):
                continue  # checked with its field
            exact, value = want.get(name), have.get(name)
            if name in approx and exact is not None and value is not None:
                box = have.get(name + BOUNDS_SUFFIX)
                if box is None or not within(exact, box):
                    differences.append(Difference(group, name, exact, value, box or b"missing"))
            elif exact != value:
                differences.append(Difference(group, name, exact, value))
    return differences


def verify_day(
    store: Store, job: Job[Any], day: dt.date, salt_buckets: int, *, batch_size: int = 2000
) -> VerifyReport:
    """Recompute ``day`` from the raw rows and compare with the stored summaries."""
    twin = job.exact_twin()
    out, scanned = _fold(store, twin, day, salt_buckets, batch_size)
    expected = _finalize(twin, out)
    stored = read_stored(store, job, day)
    return VerifyReport(
        job=job.name,
        day=day,
        groups_expected=len(expected),
        groups_stored=len(stored),
        groups_compared=len(expected.keys() | stored.keys()),
        rows_read=scanned,
        rows_malformed=out.rows_malformed,
        differences=compare(expected, stored, job.sketched),
    )
