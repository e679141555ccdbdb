"""A skewed day whose plan does not know the skew: the rows of every merchant but
the hot one are there when the master plans; the hot merchant's rows (about
``hot_share`` of the day, ``seeding.generate_rows(hot_share=...)``) land after the
plan is recorded, so the chunks holding them turn out much larger than planned --
the straggler a run-time split exists for. (Planning from region boundaries, or
from an earlier night's cut points, misjudges a chunk the same way.)"""

from __future__ import annotations

import collections
import datetime as dt

from nightfold.common.store.base import Row
from nightfold.ops.seeding import generate_rows


def hot_merchant(rows: list[Row]) -> bytes:
    counts = collections.Counter(key.split(b"|")[2] for key, _ in rows if key.count(b"|") >= 3)
    return counts.most_common(1)[0][0]


def skewed_in_two(
    day: dt.date, rows: int, *, salt_buckets: int, hot_share: float = 0.3, seed: int = 1
) -> tuple[list[Row], list[Row]]:
    """The day's rows as (every merchant but the hot one, the hot merchant's)."""
    every = list(
        generate_rows(day, rows, salt_buckets=salt_buckets, hot_share=hot_share, seed=seed)
    )
    hot = hot_merchant(every)
    late = [r for r in every if r[0].count(b"|") >= 3 and r[0].split(b"|")[2] == hot]
    early = [r for r in every if not (r[0].count(b"|") >= 3 and r[0].split(b"|")[2] == hot)]
    return early, late
