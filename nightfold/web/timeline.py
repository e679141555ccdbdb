"""The run timeline: every chunk attempt in a lane of its worker, as SVG.

Pure functions from attempts (``nightfold.ops.history.Attempt``, or anything
with the same fields) to a layout and from the layout to SVG text, so the
packing and the aggregation are tested without a browser or a database.

Two scales, one picture:

- up to :data:`DETAIL_LIMIT` attempts, every attempt is its own bar, packed
  into as many rows per worker as it ran chunks at once (interval
  partitioning: the fewest rows with no overlap), each with a tooltip and the
  chunk it is (``data-chunk``) and how it ended (``data-outcome``);
- above that (a day of 30,000 chunks is about 30 bars per pixel), each worker
  gets one row of fixed time bins: a bin's opacity is how busy the worker was
  (busy seconds / bin seconds / its concurrency), its colour the stage it spent
  most of the bin on, and the exceptional attempts -- failures, takeovers,
  hand-backs, dead chunks -- stay individual marks above it. The SVG then has at
  most lanes x bins elements however large the day, and stays readable.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from markupsafe import Markup, escape

DETAIL_LIMIT = 2500
"""Attempts drawn one by one; above this the lanes are aggregated into bins."""
BINS = 240
"""Time bins per lane when aggregated."""
WIDTH = 1100
LABEL_W = 150
PLOT_W = WIDTH - LABEL_W - 10
ROW_H = 9
LANE_GAP = 6
AXIS_H = 22
EXCEPTIONAL = ("failed", "dead", "released", "lease_expired", "worker_dead")
TITLES = {
    "done": "done",
    "running": "running",
    "failed": "failed",
    "dead": "dead",
    "released": "handed back",
    "lease_expired": "taken over (lease expired)",
    "worker_dead": "taken over (worker gone)",
}


class AttemptLike(Protocol):
    """An attempt as ``nightfold.ops.history.Attempt`` has it: times in seconds
    since the run's origin, ``end`` None while it runs."""

    @property
    def chunk_id(self) -> int: ...
    @property
    def stage(self) -> str: ...
    @property
    def idx(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def worker(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def rows(self) -> int: ...


@dataclass(frozen=True)
class Bar:
    """One attempt placed on the plot: seconds from the origin, and its row."""

    chunk_id: int
    stage: str
    idx: int
    attempt: int
    worker: str
    start: float
    end: float
    outcome: str
    rows: int
    row: int = 0


@dataclass
class Lane:
    worker: str
    bars: list[Bar] = field(default_factory=list)
    rows: int = 1
    bins: list[tuple[float, str]] = field(default_factory=list)
    """(busy fraction 0..1, dominant stage) per bin, when aggregated."""
    marks: list[Bar] = field(default_factory=list)
    """The exceptional attempts, drawn individually when aggregated."""


@dataclass
class Layout:
    lanes: list[Lane]
    span: float
    """Seconds from the origin to the end of the plot (at least 1)."""
    aggregated: bool
    attempts: int


def pack(bars: Sequence[Bar]) -> tuple[list[Bar], int]:
    """Assign rows so that no two bars of one row overlap, with the fewest rows
    (greedy by start time, reusing the row that freed up first)."""
    placed: list[Bar] = []
    free: list[tuple[float, int]] = []  # (end, row) of the rows in use
    rows = 0
    for b in sorted(bars, key=lambda b: (b.start, b.end, b.chunk_id)):
        if free and free[0][0] <= b.start:
            _, row = heapq.heappop(free)
        else:
            row, rows = rows, rows + 1
        placed.append(replace(b, row=row))
        heapq.heappush(free, (b.end, row))
    return placed, max(rows, 1)


def bin_lane(
    bars: Sequence[tuple[float, float, str]], span: float, bins: int, concurrency: int
) -> list[tuple[float, str]]:
    """Busy fraction and dominant stage per time bin of one worker's
    ``(start, end, stage)`` spans."""
    width = span / bins
    busy = [0.0] * bins
    by_stage: list[dict[str, float]] = [{} for _ in range(bins)]
    for start, end, stage in bars:
        if end <= start:
            continue
        first = min(bins - 1, max(0, int(start / width)))
        last = min(bins - 1, max(0, math.ceil(end / width) - 1))
        for i in range(first, last + 1):
            overlap = min(end, (i + 1) * width) - max(start, i * width)
            if overlap > 0:
                busy[i] += overlap
                cell = by_stage[i]
                cell[stage] = cell.get(stage, 0.0) + overlap
    out = []
    for i in range(bins):
        frac = min(1.0, busy[i] / (width * max(concurrency, 1)))
        stage = max(by_stage[i].items(), key=lambda kv: kv[1])[0] if by_stage[i] else ""
        out.append((frac, stage))
    return out


def concurrency(spans: Sequence[tuple[float, float, str]]) -> int:
    """The most spans open at one instant (an end at t closes before a start at t)."""
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    depth = best = 0
    for _, step in points:
        depth += step
        best = max(best, depth)
    return max(best, 1)


def layout(
    attempts: Sequence[AttemptLike],
    now: float,
    *,
    end: float | None = None,
    detail_limit: int = DETAIL_LIMIT,
    bins: int = BINS,
) -> Layout:
    """Lanes by worker (in order of their first attempt) from 0 (the run's origin)
    to ``end`` (default: the last end, or ``now`` while any runs); times in seconds."""
    if not attempts:
        return Layout([], 1.0, False, 0)
    span = max(1.0, end if end is not None else max((a.end or now) for a in attempts))
    aggregated = len(attempts) > detail_limit
    first: dict[str, float] = {}
    if not aggregated:
        lanes: dict[str, Lane] = {}
        for a in attempts:
            lane = lanes.setdefault(a.worker, Lane(a.worker))
            s = max(0.0, a.start)
            e = max(s, now if a.end is None else a.end)
            lane.bars.append(
                Bar(a.chunk_id, a.stage, a.idx, a.attempt, a.worker, s, e, a.outcome, a.rows)
            )
            first[a.worker] = min(first.get(a.worker, s), s)
        for lane in lanes.values():
            lane.bars, lane.rows = pack(lane.bars)
        ordered = sorted(lanes.values(), key=lambda ln: (first[ln.worker], ln.worker))
        return Layout(ordered, span, False, len(attempts))
    # a big day: per worker only (start, end, stage) spans, binned; exceptions kept
    spans: dict[str, list[tuple[float, float, str]]] = {}
    marks: dict[str, list[Bar]] = {}
    for a in attempts:
        s = max(0.0, a.start)
        e = max(s, now if a.end is None else a.end)
        spans.setdefault(a.worker, []).append((s, e, a.stage))
        if a.outcome in EXCEPTIONAL:
            bar = Bar(a.chunk_id, a.stage, a.idx, a.attempt, a.worker, s, e, a.outcome, a.rows)
            marks.setdefault(a.worker, []).append(bar)
    out = []
    for worker, ws in spans.items():
        lane = Lane(worker, rows=1, marks=marks.get(worker, []))
        lane.bins = bin_lane(ws, span, bins, concurrency(ws))
        first[worker] = min(s for s, _, _ in ws)
        out.append(lane)
    out.sort(key=lambda ln: (first[ln.worker], ln.worker))
    return Layout(out, span, True, len(attempts))


def _nice_step(span: float, ticks: int = 8) -> float:
    raw = span / ticks
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600):
        if step >= raw:
            return float(step)
    return 86400.0


def _clock(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _short(worker: str) -> str:
    """host:pid of a worker id ``host:pid:random``."""
    parts = worker.split(":")
    return ":".join(parts[:2]) if len(parts) >= 2 else worker


def lane_height(lane: Lane, aggregated: bool) -> int:
    return (2 * ROW_H if aggregated else lane.rows * ROW_H) + LANE_GAP


def svg(lay: Layout) -> Markup:
    """The layout as one inline SVG element (CSS classes give the colours)."""
    if not lay.lanes:
        return Markup('<p class="muted">No chunk has been claimed yet.</p>')
    height = AXIS_H + sum(lane_height(ln, lay.aggregated) for ln in lay.lanes) + 4
    scale = PLOT_W / lay.span
    mode = "aggregated" if lay.aggregated else "detail"
    out = [
        f'<svg class="timeline {mode}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" data-attempts="{lay.attempts}" '
        f'aria-label="chunk timeline by worker, {lay.attempts} attempts">'
    ]
    step = _nice_step(lay.span)
    t = 0.0
    while t <= lay.span + 1e-9:
        x = LABEL_W + t * scale
        out.append(
            f'<line class="grid" x1="{x:.1f}" y1="{AXIS_H - 4}" x2="{x:.1f}" y2="{height}"/>'
            f'<text class="tick" x="{x:.1f}" y="{AXIS_H - 8}">{_clock(t)}</text>'
        )
        t += step
    y = AXIS_H
    for lane in lay.lanes:
        h = lane_height(lane, lay.aggregated) - LANE_GAP
        name = escape(_short(lane.worker))
        out.append(
            f'<g class="lane" data-worker="{escape(lane.worker)}">'
            f"<title>{escape(lane.worker)}</title>"
            f'<text class="worker" x="{LABEL_W - 6}" y="{y + min(h, 2 * ROW_H) / 2 + 4:.1f}">'
            f"{name}</text>"
            f'<rect class="lane-bg" x="{LABEL_W}" y="{y}" width="{PLOT_W}" height="{h}"/>'
        )
        if lay.aggregated:
            out.extend(_bins(lane, y, h))
            out.extend(_bar(b, y, ROW_H // 2, scale, mark=True) for b in lane.marks)
        else:
            out.extend(_bar(b, y + b.row * ROW_H, ROW_H - 1, scale) for b in lane.bars)
        out.append("</g>")
        y += h + LANE_GAP
    out.append("</svg>")
    return Markup("".join(out))


def _bins(lane: Lane, y: float, h: float) -> list[str]:
    """Runs of equal bins as one rect each (fewer elements)."""
    out: list[str] = []
    n = len(lane.bins)
    w = PLOT_W / n
    i = 0
    while i < n:
        frac, stage = lane.bins[i]
        level = round(frac * 10) / 10
        j = i + 1
        while j < n and lane.bins[j][1] == stage and round(lane.bins[j][0] * 10) / 10 == level:
            j += 1
        if stage and level > 0:
            out.append(
                f'<rect class="bin {stage}" x="{LABEL_W + i * w:.1f}" y="{y + 1}" '
                f'width="{(j - i) * w:.1f}" height="{h - 2}" fill-opacity="{max(level, 0.1):.1f}">'
                f"<title>{stage}: {level:.0%} busy</title></rect>"
            )
        i = j
    return out


def _bar(b: Bar, y: float, h: float, scale: float, *, mark: bool = False) -> str:
    x = LABEL_W + b.start * scale
    w = max(1.0, (b.end - b.start) * scale)
    secs = b.end - b.start
    title = (
        f"{b.stage}[{b.idx}] attempt {b.attempt}: {TITLES.get(b.outcome, b.outcome)}, "
        f"{secs:.2f}s" + (f", {b.rows:,} rows" if b.rows else "") + f" on {_short(b.worker)}"
    )
    cls = "mark" if mark else "bar"
    return (
        f'<rect class="{cls} {b.stage} {b.outcome}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
        f'height="{h}" data-chunk="{b.stage}:{b.idx}" data-outcome="{b.outcome}">'
        f"<title>{escape(title)}</title></rect>"
    )
