"""The pure bookkeeping of segments and splits: a segment's partial key names its
chunk, seq and key span and parses back (any other row of a bucket does not); the
reduce counts a row only for a committed (chunk, seq, span), and a pre-segment
partial only for a chunk without segments; the master asks for a split only when
no map chunk waits, one at a time, of the chunk that has read the most."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.db.segments import (
    SPLIT_DECLINED,
    SPLIT_NONE,
    SPLIT_REQUESTED,
    Running,
    SegmentRef,
)
from nightfold.common.keys import (
    parse_segment_key,
    partial_key,
    partial_prefix,
    segment_key,
    span_id,
)
from nightfold.master.rebalance import pick_split
from nightfold.worker.executor import counts

DAY = dt.date(2026, 11, 22)
PREFIX = partial_prefix("merchant_daily", DAY, 3, 5)


@given(st.integers(0, 999_999), st.integers(0, 999_999), st.binary(), st.binary())
def test_a_segment_key_parses_back(idx: int, seq: int, start: bytes, end: bytes) -> None:
    span = span_id(start, end)
    key = segment_key("merchant_daily", DAY, 3, 5, idx, seq, span)
    assert key.startswith(PREFIX)
    assert parse_segment_key(key, len(PREFIX)) == (idx, seq, span)


@given(st.binary(), st.binary(), st.binary(), st.binary())
def test_spans_name_their_bounds(a: bytes, b: bytes, c: bytes, d: bytes) -> None:
    assert len(span_id(a, b)) == 16
    if (a, b) != (c, d):
        assert span_id(a, b) != span_id(c, d)  # 64 bits: a collision here is news


def test_the_reduce_counts_committed_segments_and_legacy_rows_of_chunks_without() -> None:
    span = span_id(b"a", b"b")
    committed = {SegmentRef(7, 0, span)}
    check = counts(committed, len(PREFIX))
    assert check(segment_key("merchant_daily", DAY, 3, 5, 7, 0, span))
    assert not check(segment_key("merchant_daily", DAY, 3, 5, 7, 0, span_id(b"a", b"c")))
    assert not check(segment_key("merchant_daily", DAY, 3, 5, 7, 1, span))
    assert not check(segment_key("merchant_daily", DAY, 3, 5, 8, 0, span))
    # one partial per chunk, as before segments: only for a chunk that has none
    assert check(partial_key("merchant_daily", DAY, 3, 5, 8))
    assert not check(partial_key("merchant_daily", DAY, 3, 5, 7))
    assert counts(None, len(PREFIX))(b"anything")


def run(idx: int, rows: int, state: int = SPLIT_NONE) -> Running:
    return Running(chunk_id=100 + idx, idx=idx, rows_read=rows, split_state=state)


def test_a_split_is_asked_of_the_chunk_that_read_most_once_nothing_waits() -> None:
    running = [run(0, 5000), run(1, 90_000), run(2, 40_000)]
    assert pick_split(0, running, 10_000) == running[1]
    # not while a chunk waits, nor while a request is outstanding
    assert pick_split(1, running, 10_000) is None
    assert pick_split(0, [*running, run(3, 1, SPLIT_REQUESTED)], 10_000) is None
    # a declined claim is not asked again; a chunk that read too little is not asked
    assert pick_split(0, [run(1, 90_000, SPLIT_DECLINED), run(2, 40_000)], 10_000) == run(2, 40_000)
    assert pick_split(0, [run(0, 9_999)], 10_000) is None
    assert pick_split(0, [], 10_000) is None
