"""The splitter: chunks partition the day exactly, respect regions, stay within the
chunk bound, and hold about the target rows when the inputs say where rows are."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.common.keys import KeyRange, day_ranges, move_day, prefix_range, raw_key
from nightfold.master.splitter import (
    Guidepost,
    PlannedChunk,
    Sample,
    estimate_rows,
    key_between,
    moved_guideposts,
    pieces,
    plan_chunks,
    probe_points,
    sample_weights,
)

DAY = dt.date(2026, 11, 22)


def R(start: bytes, end: bytes) -> KeyRange:
    return KeyRange(start, end)


def sample_of(piece: KeyRange, keys: Sequence[bytes], limit: int, points: int = 4) -> Sample:
    """What sample_piece reads of ``keys`` (sorted, distinct) inside ``piece``."""
    inside = [k for k in keys if k in piece]
    head = tuple(inside[:limit])
    if len(head) < limit:
        return Sample(piece, limit, head)
    tail = tuple(inside[::-1][:limit])
    sample = Sample(piece, limit, head, tail)
    if sample.whole:
        return sample
    starts = [head[-1] + b"\x00", *probe_points(head[-1], tail[-1], points)]
    starts = [x for x in starts if x < tail[-1]]
    stops = [*starts[1:], tail[-1]]
    probes = tuple(
        (x, tuple(k for k in inside if x <= k < stop)[:limit])
        for x, stop in zip(starts, stops, strict=True)
    )
    return Sample(piece, limit, head, tail, probes)


def count_in(chunk: KeyRange, keys: Sequence[bytes]) -> int:
    lo = bisect_left(keys, chunk.start)
    hi = bisect_left(keys, chunk.end) if chunk.end else len(keys)
    return hi - lo


def assert_partition(chunks: Sequence[PlannedChunk], ranges: Sequence[KeyRange]) -> None:
    """The chunks cover exactly the ranges, in order: no gap, no overlap."""
    it = iter(chunks)
    for r in ranges:
        chunk = next(it)
        assert chunk.range.start == r.start
        while chunk.range.end != r.end:
            after = next(it)
            assert after.range.start == chunk.range.end
            chunk = after
    assert next(it, None) is None
    assert all(c.rows >= 0 for c in chunks)


# -- examples -------------------------------------------------------------------------------


def test_a_range_without_regions_or_samples_is_one_chunk() -> None:
    chunks = plan_chunks([R(b"a", b"z")], [], [], {}, target_rows=1000, max_chunks=100)
    assert [c.range for c in chunks] == [R(b"a", b"z")]


def test_no_ranges_give_no_chunks() -> None:
    assert plan_chunks([], [b"m"], [], {}, 10, 10) == []


def test_region_starts_inside_a_range_cut_it_and_others_are_ignored() -> None:
    starts = [b"0", b"a", b"c", b"c", b"f", b"z", b"zz"]
    assert pieces([R(b"a", b"z")], starts) == [R(b"a", b"c"), R(b"c", b"f"), R(b"f", b"z")]
    # With rows known in every piece, no chunk crosses a region start
    keys = [b"b1", b"b2", b"d", b"g", b"h"]
    samples = {p: sample_of(p, keys, 10) for p in pieces([R(b"a", b"z")], starts)}
    chunks = plan_chunks([R(b"a", b"z")], starts, [], samples, 100, 100)
    assert [c.range for c in chunks] == [R(b"a", b"c"), R(b"c", b"f"), R(b"f", b"z")]
    assert [c.rows for c in chunks] == [2, 1, 2]


def test_empty_pieces_join_a_neighbour_of_their_range() -> None:
    # Given regions at c and f, and rows only in [c, f)
    keys = [b"d1", b"d2"]
    ps = pieces([R(b"a", b"z")], [b"c", b"f"])
    chunks = plan_chunks(
        [R(b"a", b"z")], [b"c", b"f"], [], {p: sample_of(p, keys, 8) for p in ps}, 10, 10
    )
    # Then the empty pieces are not chunks of their own
    assert [(c.range, c.rows) for c in chunks] == [(R(b"a", b"z"), 2)]


def test_a_piece_read_whole_is_cut_at_its_keys_exactly() -> None:
    keys = [b"k%03d" % i for i in range(100)]
    piece = R(b"k", b"l")
    chunks = plan_chunks([piece], [], [], {piece: sample_of(piece, keys, 256)}, 25, 100)
    assert [c.rows for c in chunks] == [25, 25, 25, 25]
    assert [count_in(c.range, keys) for c in chunks] == [25, 25, 25, 25]


def test_guideposts_of_an_earlier_night_set_the_cuts() -> None:
    # Given yesterday's chunks of 40 rows each, moved onto today
    bounds = [raw_key(0, DAY, f"m{i:03d}", "o") for i in range(0, 100, 10)]
    day = day_ranges(DAY, 1)[0]
    edges = [day.start, *bounds[1:], day.end]
    gps = [Guidepost(R(a, b), 40) for a, b in pairwise(edges)]
    # When planned for 80 rows a chunk
    chunks = plan_chunks([day], [], gps, {}, 80, 1000)
    # Then every chunk is two guideposts, cut at their boundaries
    assert [c.rows for c in chunks] == [80.0] * 5
    assert {c.range.start for c in chunks[1:]} <= set(edges)


def test_a_guidepost_over_a_region_start_is_shared_by_key_position() -> None:
    gp = Guidepost(R(b"a", b"c"), 100)
    chunks = plan_chunks([R(b"a", b"c")], [b"b"], [gp], {}, 1000, 10)
    assert [c.range for c in chunks] == [R(b"a", b"b"), R(b"b", b"c")]
    assert chunks[0].rows == pytest.approx(50, abs=1)
    assert sum(c.rows for c in chunks) == pytest.approx(100)


def test_the_chunk_count_is_bounded() -> None:
    keys = [b"k%05d" % i for i in range(5000)]
    piece = R(b"k", b"l")
    # 5000 rows at 10 a chunk would be 500 chunks; the bound is 20
    chunks = plan_chunks([piece], [], [], {piece: sample_of(piece, keys, 10_000)}, 10, 20)
    assert 19 <= len(chunks) <= 20
    assert max(c.rows for c in chunks) - min(c.rows for c in chunks) <= 1


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="sorted and disjoint"):
        plan_chunks([R(b"b", b"c"), R(b"a", b"b")], [], [], {}, 10, 10)
    with pytest.raises(ValueError, match="region_starts"):
        plan_chunks([R(b"a", b"z")], [b"c", b"b"], [], {}, 10, 10)
    with pytest.raises(ValueError, match="guideposts"):
        gps = [Guidepost(R(b"a", b"c"), 1), Guidepost(R(b"b", b"d"), 1)]
        plan_chunks([R(b"a", b"z")], [], gps, {}, 10, 10)
    with pytest.raises(ValueError, match="positive"):
        plan_chunks([R(b"a", b"z")], [], [], {}, 0, 10)


def test_move_day_moves_keys_and_bounds_of_the_day_only() -> None:
    other = DAY + dt.timedelta(days=1)
    key = raw_key(7, DAY, "m1", "o2")
    assert move_day(key, DAY, other) == raw_key(7, other, "m1", "o2")
    (r,) = day_ranges(DAY, 1)
    assert move_day(r.end, DAY, other) == day_ranges(other, 1)[0].end
    assert move_day(raw_key(7, other, "m1", "o2"), DAY, other) is None
    assert move_day(b"garbage", DAY, other) is None


def test_moved_guideposts_drop_foreign_and_overlapping_chunks() -> None:
    other = DAY + dt.timedelta(days=3)
    r = day_ranges(DAY, 2)
    mid = raw_key(0, DAY, "m5", "o")
    chunks = [
        (r[0].start, mid, 10),
        (mid, r[0].end, 20),
        (mid, r[0].end + b"x", 5),  # overlaps the one before: dropped
        (b"zz", b"zzz", 7),  # not a key of DAY: dropped
        (r[1].start, r[1].end, 30),
    ]
    moved = moved_guideposts(chunks, DAY, other)
    assert [g.rows for g in moved] == [10, 20, 30]
    assert moved[0].range == R(day_ranges(other, 2)[0].start, raw_key(0, other, "m5", "o"))


# -- properties -----------------------------------------------------------------------------

key_st = st.binary(min_size=1, max_size=6)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[list[KeyRange], list[bytes], list[bytes]]:
    bounds = sorted(set(draw(st.lists(key_st, min_size=0, max_size=8))))
    unbounded = draw(st.booleans())
    ranges = [R(a, b) for a, b in pairwise(bounds)][::2]
    if unbounded and bounds and (not ranges or ranges[-1].end < bounds[-1]):
        ranges.append(R(bounds[-1], b""))
    regions = sorted(draw(st.lists(key_st, max_size=10)))
    keys = sorted(set(draw(st.lists(key_st, max_size=300))))
    return ranges, regions, keys


@settings(max_examples=300, deadline=None)
@given(
    data=inputs(),
    target=st.integers(1, 60),
    max_chunks=st.integers(1, 40),
    limit=st.integers(1, 40),
    points=st.integers(1, 6),
    use_guideposts=st.booleans(),
    gp_rows=st.integers(0, 50),
)
def test_property_the_plan_partitions_the_ranges_within_the_bound(
    data: tuple[list[KeyRange], list[bytes], list[bytes]],
    target: int,
    max_chunks: int,
    limit: int,
    points: int,
    use_guideposts: bool,
    gp_rows: int,
) -> None:
    ranges, regions, keys = data
    ps = pieces(ranges, regions)
    samples = {p: sample_of(p, keys, limit, points) for p in ps}
    gps: list[Guidepost] = []
    if use_guideposts:  # yesterday: every other key a boundary, rows made up
        cuts = keys[::7]
        gps = [Guidepost(R(a, b), gp_rows) for a, b in pairwise(cuts)]
    chunks = plan_chunks(ranges, regions, gps, samples, target, max_chunks)
    assert_partition(chunks, ranges)
    assert len(chunks) <= max(max_chunks, len(ps))
    # A chunk crosses a region start only where an empty piece was joined
    for c in chunks:
        inner = [s for s in regions if c.range.start < s and (not c.range.end or s < c.range.end)]
        if inner:
            assert any(p.start >= c.range.start and count_in(p, keys) == 0 for p in ps) or gps


@settings(max_examples=200, deadline=None)
@given(data=inputs(), target=st.integers(2, 60))
def test_property_pieces_read_whole_give_exact_estimates(
    data: tuple[list[KeyRange], list[bytes], list[bytes]], target: int
) -> None:
    ranges, regions, keys = data
    ps = pieces(ranges, regions)
    samples = {p: sample_of(p, keys, 10_000) for p in ps}
    chunks = plan_chunks(ranges, regions, [], samples, target, 10_000)
    assert_partition(chunks, ranges)
    in_day = sum(count_in(r, keys) for r in ranges)
    assert estimate_rows(chunks) == in_day
    for c in chunks:
        assert c.rows == pytest.approx(count_in(c.range, keys))
        # cut at keys, the piece split evenly: no chunk above target unless it is one key
        assert c.rows <= 2 * target or c.rows <= 1


@settings(max_examples=200, deadline=None)
@given(lo=key_st, hi=key_st, share=st.floats(0, 1), count=st.integers(1, 20))
def test_property_interpolated_keys_lie_strictly_between(
    lo: bytes, hi: bytes, share: float, count: int
) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    for end in (hi, b""):
        key = key_between(lo, end, share)
        assert key is None or (lo < key and (not end or key < end))
    points = probe_points(lo, hi, count)
    assert points == sorted(set(points))
    assert all(lo < p < hi for p in points)
    assert len(points) <= count - 1


def test_probe_points_spread_over_real_keys() -> None:
    first, last = raw_key(3, DAY, "m000017", "o1"), raw_key(3, DAY, "m000998", "o9")
    points = probe_points(first, last, 4)
    assert len(points) == 3
    assert all(p.startswith(prefix_range(first[:12]).start) for p in points)


def test_sample_weights_share_each_pieces_estimated_rows_among_its_sampled_keys() -> None:
    whole = R(b"a", b"b")
    partial = R(b"b", b"c")
    samples = {
        whole: Sample(whole, 4, (b"a1", b"a2")),  # fewer than the limit: the whole piece
        partial: Sample(partial, 2, (b"b1", b"b2"), (b"b9", b"b8"), ((b"b5", (b"b5", b"b6")),)),
    }
    chunks = [
        PlannedChunk(R(b"a", b"b"), 2),
        PlannedChunk(R(b"b", b"b5"), 300),
        PlannedChunk(R(b"b5", b"c"), 300),
        PlannedChunk(R(b"c", b"d"), 10_000),  # not probed: stands for nothing
    ]
    weighted = dict(sample_weights(samples, chunks))
    assert weighted == {
        b"a1": 1.0,
        b"a2": 1.0,
        **{k: 100.0 for k in (b"b1", b"b2", b"b9", b"b8", b"b5", b"b6")},
    }
