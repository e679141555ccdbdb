"""The splitter: chunks partition the day exactly, respect regions, and hold about target rows."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.common.keys import KeyRange, prefix_range
from nightfold.master.splitter import estimate_rows, split


def R(start: bytes, end: bytes) -> KeyRange:
    return KeyRange(start, end)


def test_a_range_without_regions_or_samples_is_one_chunk() -> None:
    # Given one range, no region cuts, no samples / When split
    chunks = split([R(b"a", b"z")], [], [], sample_every=100, target_rows=1000)
    # Then the whole range is one chunk: unsampled rows are not lost
    assert chunks == [R(b"a", b"z")]


def test_no_ranges_give_no_chunks() -> None:
    assert split([], [b"m"], [b"n"], 10, 10) == []


def test_region_starts_inside_a_range_cut_it_and_others_are_ignored() -> None:
    # Given region starts before, at, inside and after the range
    starts = [b"0", b"a", b"c", b"c", b"f", b"z", b"zz"]
    # When split with no samples
    chunks = split([R(b"a", b"z")], starts, [], 10, 100)
    # Then only the starts strictly inside cut, once each
    assert chunks == [R(b"a", b"c"), R(b"c", b"f"), R(b"f", b"z")]


def test_samples_cut_every_k_spread_evenly() -> None:
    # Given 10 samples at 100 rows each and a target of 300 rows (k = 3 samples)
    samples = [b"k%02d" % i for i in range(10)]
    # When split
    chunks = split([R(b"k", b"l")], [], samples, sample_every=100, target_rows=300)
    # Then ceil(10 / 3) = 4 chunks of 2-3 samples, cut at sample keys, no runt at the end
    assert chunks == [R(b"k", b"k02"), R(b"k02", b"k05"), R(b"k05", b"k07"), R(b"k07", b"l")]
    assert [estimate_rows(c, samples, 100) for c in chunks] == [200, 300, 200, 300]


def test_target_not_a_multiple_of_the_stride_rounds_up() -> None:
    # Given target 250 rows at 100 rows a sample: k = ceil(2.5) = 3
    samples = [b"k%02d" % i for i in range(6)]
    # When split / Then 2 chunks of 3 samples
    assert split([R(b"k", b"l")], [], samples, 100, 250) == [R(b"k", b"k03"), R(b"k03", b"l")]


def test_an_unbounded_last_range_stays_unbounded() -> None:
    # Given a bounded range and an unbounded one after it, with a region start inside the latter
    ranges = [R(b"a", b"b"), R(b"c", b"")]
    # When split
    chunks = split(ranges, [b"d"], [b"c1", b"c2", b"e"], 1, 1)
    # Then the chunks end with the unbounded tail
    assert chunks == [R(b"a", b"b"), R(b"c", b"c2"), R(b"c2", b"d"), R(b"d", b"")]


def test_a_day_of_salted_ranges_keeps_every_salt_bucket() -> None:
    # Given the ranges of 4 salt buckets, samples only in bucket 01
    ranges = [prefix_range(b"%02d|20261122|" % s) for s in range(4)]
    samples = [b"01|20261122|m%04d" % i for i in range(9)]
    # When split with k = 3
    chunks = split(ranges, [b"02|"], samples, 10, 30)
    # Then buckets without samples are one chunk each and bucket 01 is three
    assert len(chunks) == 1 + 3 + 1 + 1
    assert chunks[0] == ranges[0] and chunks[-1] == ranges[3]


@pytest.mark.parametrize(
    ("ranges", "regions", "samples", "every", "target", "message"),
    [
        ([R(b"a", b"b")], [], [], 0, 10, "sample_every"),
        ([R(b"a", b"b")], [], [], 10, 0, "target_rows"),
        ([R(b"a", b"c"), R(b"b", b"d")], [], [], 10, 10, "disjoint"),
        ([R(b"c", b"d"), R(b"a", b"b")], [], [], 10, 10, "disjoint"),
        ([R(b"a", b""), R(b"b", b"c")], [], [], 10, 10, "disjoint"),
        ([R(b"a", b"z")], [b"c", b"b"], [], 10, 10, "region_starts"),
        ([R(b"a", b"z")], [], [b"c", b"b"], 10, 10, "samples"),
    ],
)
def test_invalid_input_raises_value_error(
    ranges: list[KeyRange],
    regions: list[bytes],
    samples: list[bytes],
    every: int,
    target: int,
    message: str,
) -> None:
    # Given invalid input / When split / Then ValueError names the problem
    with pytest.raises(ValueError, match=message):
        split(ranges, regions, samples, every, target)


# ---------------------------------------------------------------- properties

# short keys over a tiny alphabet, so ranges, region starts and samples collide often
keys = st.text(alphabet="abcd", min_size=1, max_size=3).map(str.encode)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[list[KeyRange], list[bytes], list[bytes], int, int]:
    bounds = sorted(draw(st.sets(keys, min_size=2, max_size=12)))
    ranges = []
    for a, b in pairwise(bounds):
        if draw(st.booleans()):  # keep some gaps, and some adjacent ranges
            ranges.append(KeyRange(a, b))
    if draw(st.booleans()):
        ranges.append(KeyRange(bounds[-1], b""))
    regions = sorted(draw(st.lists(keys, max_size=10)))
    samples = sorted(draw(st.lists(keys, max_size=60)))
    every = draw(st.integers(1, 50))
    target = draw(st.integers(1, 400))
    return ranges, regions, samples, every, target


def covering(chunks: Sequence[KeyRange], key: bytes) -> list[KeyRange]:
    return [c for c in chunks if key in c]


def inside(key: bytes, r: KeyRange) -> bool:
    return r.start < key and (not r.end or key < r.end)


@settings(max_examples=300, deadline=None)
@given(case=inputs(), probes=st.lists(keys, max_size=30))
def test_chunks_partition_the_ranges_in_key_order(
    case: tuple[list[KeyRange], list[bytes], list[bytes], int, int], probes: list[bytes]
) -> None:
    ranges, regions, samples, every, target = case
    # When split
    chunks = split(ranges, regions, samples, every, target)

    # Then chunks are in key order and never overlap
    assert chunks == sorted(chunks)
    for before, after in pairwise(chunks):
        assert before.end and before.end <= after.start
    # And each input range is exactly the union of a run of contiguous chunks
    position = 0
    for r in ranges:
        assert chunks[position].start == r.start
        while chunks[position].end != r.end:
            assert chunks[position].end == chunks[position + 1].start
            position += 1
        position += 1
    assert position == len(chunks)
    # And any key is in exactly one chunk when it is in a range, else in none
    for key in [*probes, *samples, *regions, *(r.start for r in ranges)]:
        assert len(covering(chunks, key)) == (1 if covering(ranges, key) else 0)


@settings(max_examples=300, deadline=None)
@given(case=inputs())
def test_chunks_cut_at_regions_and_hold_between_half_and_one_chunk_of_samples(
    case: tuple[list[KeyRange], list[bytes], list[bytes], int, int],
) -> None:
    ranges, regions, samples, every, target = case
    per_chunk = -(-target // every)
    # When split
    chunks = split(ranges, regions, samples, every, target)
    starts = {c.start for c in chunks}

    # Then no chunk straddles a region start, and each one inside a range starts a chunk
    for cut in regions:
        assert not any(inside(cut, c) for c in chunks)
        if any(inside(cut, r) for r in ranges):
            assert cut in starts

    # And within each region piece, chunks hold <= k distinct samples, >= k // 2 when the
    # piece has k or more, and a piece is cut into ceil(n / k) chunks (one if it has none)
    distinct = sorted(set(samples))
    cuts = sorted(
        {r.start for r in ranges} | {s for s in regions if any(inside(s, r) for r in ranges)}
    )
    by_piece: dict[bytes, list[int]] = {}
    for chunk in chunks:
        piece = cuts[bisect_left(cuts, chunk.start + b"\x00") - 1]
        lo = bisect_left(distinct, chunk.start)
        hi = bisect_left(distinct, chunk.end) if chunk.end else len(distinct)
        by_piece.setdefault(piece, []).append(hi - lo)
        assert estimate_rows(chunk, distinct, every) == (hi - lo) * every
    for counts in by_piece.values():
        n = sum(counts)
        assert len(counts) == max(1, -(-n // per_chunk))
        assert max(counts) <= per_chunk
        if n >= per_chunk:
            assert min(counts) >= per_chunk // 2


@settings(max_examples=100, deadline=None)
@given(case=inputs())
def test_split_is_pure_and_ignores_duplicate_samples(
    case: tuple[list[KeyRange], list[bytes], list[bytes], int, int],
) -> None:
    ranges, regions, samples, every, target = case
    # When split twice, once with every sample and region start doubled
    once = split(ranges, regions, samples, every, target)
    doubled = split(ranges, sorted(regions * 2), sorted(samples * 2), every, target)
    # Then the chunks are the same
    assert once == doubled == split(ranges, regions, samples, every, target)
