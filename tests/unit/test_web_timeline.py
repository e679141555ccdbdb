"""The run timeline's layout (nightfold/web/timeline.py): packing attempts into
worker rows without overlap, aggregating a large day into bounded bins, and the
SVG it draws."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.ops.history import Attempt
from nightfold.web.timeline import Bar, bin_lane, concurrency, layout, pack, svg

A = Attempt


def at(s: float) -> float:
    return s


intervals = st.lists(st.tuples(st.floats(0, 100), st.floats(0.001, 20)), min_size=1, max_size=60)


@given(intervals)
def test_pack_never_overlaps_and_uses_the_fewest_rows(spans: list[tuple[float, float]]) -> None:
    bars = [Bar(i, "map", i, 1, "w", s, s + d, "done", 0) for i, (s, d) in enumerate(spans)]
    placed, rows = pack(bars)
    assert sorted(b.chunk_id for b in placed) == list(range(len(bars)))
    by_row: dict[int, list[Bar]] = {}
    for b in placed:
        by_row.setdefault(b.row, []).append(b)
    for row in by_row.values():
        row.sort(key=lambda b: b.start)
        assert all(a.end <= b.start for a, b in itertools.pairwise(row))
    # the fewest rows: the most bars running at one instant (starts are the candidates)
    depth = max(sum(1 for b in bars if b.start <= x.start < b.end) for x in bars)
    assert rows == depth == concurrency([(b.start, b.end, b.stage) for b in bars])


@given(intervals, st.integers(1, 50), st.integers(1, 4))
@settings(max_examples=60)
def test_bins_are_fractions_and_keep_the_busy_time(
    spans: list[tuple[float, float]], nbins: int, conc: int
) -> None:
    bars = [(s, s + d, "map") for s, d in spans]
    span = max(e for _, e, _ in bars)
    out = bin_lane(bars, span, nbins, conc)
    assert len(out) == nbins
    assert all(0.0 <= f <= 1.0 for f, _ in out)
    busy = sum(e - s for s, e, _ in bars)
    # never more than the bars' time; exactly it unless some bin was over-full
    assert sum(f for f, _ in out) * span / nbins * conc <= busy + 1e-6


def test_small_runs_draw_every_attempt_with_its_chunk_and_outcome() -> None:
    attempts = [
        A(1, "map", 0, 1, "h:1:a", at(0), at(2), "done", 100),
        A(2, "map", 1, 1, "h:1:a", at(1), at(3), "worker_dead"),
        A(2, "map", 1, 2, "h:2:b", at(4), None, "running"),
        A(3, "reduce", 0, 1, "h:2:b", at(1), at(2), "done"),
    ]
    lay = layout(attempts, now=at(6))
    assert not lay.aggregated and [ln.worker for ln in lay.lanes] == ["h:1:a", "h:2:b"]
    assert lay.lanes[0].rows == 2 and lay.span == 6
    out = str(svg(lay))
    assert out.count('class="bar ') == 4
    assert 'data-chunk="map:1" data-outcome="running"' in out
    assert 'data-chunk="map:1" data-outcome="worker_dead"' in out
    assert "map[0] attempt 1: done, 2.00s, 100 rows on h:1" in out


def test_a_large_run_is_aggregated_into_a_bounded_picture() -> None:
    # 30,000 attempts on 8 workers, two at a time, and a few failures
    attempts = []
    for i in range(30_000):
        w, slot = i % 8, (i // 8) % 2
        start = (i // 16) * 0.5
        outcome = "failed" if i % 5000 == 7 else "done"
        attempts.append(
            A(
                i,
                "map" if i < 27_000 else "reduce",
                i,
                1,
                f"h:{w}:x",
                at(start),
                at(start + 0.5 - slot * 0.01),
                outcome,
            )
        )
    lay = layout(attempts, now=at(2000), bins=200)
    assert lay.aggregated and len(lay.lanes) == 8
    out = str(svg(lay))
    # at most one element per bin per lane, plus the exceptional marks
    assert len(re.findall(r"<rect class=\"bin ", out)) <= 8 * 200
    assert len(re.findall(r"<rect class=\"mark ", out)) == 6
    assert len(out) < 400_000
    assert 'data-attempts="30000"' in out


def test_no_attempt_yet() -> None:
    assert "No chunk has been claimed yet" in str(svg(layout([], now=0.0)))


def test_worker_names_are_escaped() -> None:
    lay = layout([A(1, "map", 0, 1, "<b>:1:x", at(0), at(1), "done")], now=at(1))
    out = str(svg(lay))
    assert "<b>" not in out and "&lt;b&gt;" in out
