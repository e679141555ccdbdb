"""nightfold.sketches (issue 16): the estimates' bounds hold the exact values, merging
changes neither input, and verify compares sketched fields by their bounds."""

from __future__ import annotations

import json
import math
import random

import pytest

from nightfold.ops.verify import compare, within
from nightfold.sketches import DistinctCount, Quantiles


@pytest.mark.parametrize("n", [0, 1, 7, 300, 5_000, 60_000])
def test_distinct_bounds_hold_the_exact_count_however_merged(n: int) -> None:
    values = [b"c%07d" % i for i in range(n)] * 2  # every value twice
    random.Random(n).shuffle(values)
    parts = [DistinctCount() for _ in range(4)]
    for i, v in enumerate(values):
        parts[i % 4].add(v)
    a = parts[0].merged(parts[1])
    b = DistinctCount.from_bytes(parts[2].merged(parts[3]).to_bytes())
    estimate, lo, hi = a.merged(b).result()
    assert lo <= n <= hi and lo <= estimate <= hi
    if n <= 300:
        assert estimate == lo == hi == n  # coupon mode: exact here
    cells = a.merged(b).cells("distinct_customers")
    assert within(b"%d" % n, cells[b"s:distinct_customers_bounds"])


def test_merged_leaves_its_inputs_alone() -> None:
    a, b = Quantiles(), Quantiles()
    for x in range(500):
        a.add(x)
    b.add(10**6)
    before = a.to_bytes()
    assert a.merged(b).count == 501 and a.to_bytes() == before and b.count == 1


@pytest.mark.parametrize("n", [1, 10, 200, 201, 20_000])
def test_quantile_bounds_hold_the_nearest_rank_value(n: int) -> None:
    rng = random.Random(n)
    values = [rng.randrange(100, 100_000) for _ in range(n)]
    q = Quantiles()
    for v in values:
        q.add(v)
    cells = q.cells({"p50": 0.5, "p99": 0.99})
    ordered = sorted(values)
    for name, rank in (("p50", 0.5), ("p99", 0.99)):
        exact = ordered[max(1, math.ceil(rank * n)) - 1]
        assert within(b"%d" % exact, cells[b"s:" + name.encode() + b"_bounds"])
        if n <= 200:  # at most k values: exact
            assert cells[b"s:" + name.encode()] == b"%d" % exact
            assert json.loads(cells[b"s:" + name.encode() + b"_bounds"]) == [exact, exact]
    assert Quantiles().cells({"p50": 0.5}) == {}


def test_verify_compares_sketched_fields_by_their_bounds() -> None:
    exact = {"m": {b"s:n": b"10", b"s:d": b"100"}}
    stored = {"m": {b"s:n": b"10", b"s:d": b"98", b"s:d_bounds": b"[95,105]"}}
    assert compare(exact, stored, ["d"]) == []
    stored["m"][b"s:d_bounds"] = b"[95,99]"
    [diff] = compare(exact, stored, ["d"])
    assert (diff.kind, diff.field, diff.bounds) == ("out of bounds", b"s:d", b"[95,99]")
    del stored["m"][b"s:d_bounds"]
    assert [d.kind for d in compare(exact, stored, ["d"])] == ["out of bounds"]
    # an exact field is still compared byte for byte, bounds cells and all
    assert [d.kind for d in compare(exact, stored, [])] == ["different"]
