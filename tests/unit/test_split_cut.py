"""Where a running chunk is cut (``worker/split.py``): always a real key beyond the
owner's position and before the end, so neither side is empty; near the median of
the remaining rows for skewed days; no cut when too little is left."""

from __future__ import annotations

import bisect
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.worker.split import choose_cut


def probe_of(keys: list[bytes]):  # type: ignore[no-untyped-def]
    def probe(key: bytes, n: int) -> list[bytes]:
        i = bisect.bisect_left(keys, key)
        return keys[i : i + n]

    return probe


def skewed_salt(rows: int, hot_share: float, merchants: int, seed: int) -> list[bytes]:
    """One salt bucket of a day like ``nightfold seed --hot-share``: one merchant
    holds ``hot_share`` of the rows, order ids spread over the day."""
    rng = random.Random(seed)
    keys = set()
    for _ in range(rows):
        m = 0 if rng.random() < hot_share else rng.randrange(merchants)
        keys.add(b"03|20261122|m%06d|o%010d" % (m, rng.randrange(10**9)))
    return sorted(keys)


def rank(keys: list[bytes], key: bytes) -> int:
    return bisect.bisect_left(keys, key)


def test_a_hot_merchant_is_cut_near_the_median_of_what_is_left() -> None:
    keys = skewed_salt(100_000, 0.3, 100, seed=1)
    end = b"03|20261122}"
    for start_rank in (0, 500, 20_000, 35_000, 80_000):
        start = keys[start_rank]
        cut = choose_cut(start, end, probe_of(keys), 1000)
        assert cut is not None
        left = len(keys) - start_rank
        tail = len(keys) - rank(keys, cut.key)
        assert 0.35 * left <= tail <= 0.65 * left, (start_rank, tail, left)


def test_inside_one_hot_block_too() -> None:
    keys = skewed_salt(100_000, 0.3, 100, seed=2)
    end = b"03|20261122|m000001"
    start = keys[100]
    cut = choose_cut(start, end, probe_of(keys), 1000)
    assert cut is not None
    left = rank(keys, end) - 100
    tail = rank(keys, end) - rank(keys, cut.key)
    assert 0.35 * left <= tail <= 0.65 * left


def test_no_cut_when_too_little_is_left() -> None:
    keys = skewed_salt(5000, 0.0, 10, seed=3)
    assert choose_cut(keys[-500], b"", probe_of(keys), 1000) is None
    assert choose_cut(keys[-1] + b"\x00", b"", probe_of(keys), 1) is None


keysets = st.lists(st.binary(min_size=1, max_size=12), min_size=2, max_size=400, unique=True)


@settings(max_examples=200, deadline=None)
@given(keysets, st.data())
def test_the_cut_is_a_real_key_strictly_inside_the_remaining_range(
    keys: list[bytes], data: st.DataObject
) -> None:
    keys.sort()
    i = data.draw(st.integers(0, len(keys) - 2), label="position")
    j = data.draw(st.integers(i + 2, len(keys)), label="end")
    start, end = keys[i], (keys[j] if j < len(keys) else b"")
    min_rows = data.draw(st.integers(1, 5), label="min_rows")
    cut = choose_cut(start, end, probe_of(keys), min_rows)
    if cut is None:
        return
    assert cut.key in keys
    assert start < cut.key and (not end or cut.key < end)
    assert cut.head_rows >= min_rows and cut.tail_rows >= min_rows
