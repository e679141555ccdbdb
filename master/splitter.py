"""Planning's pure core: a day's key ranges into chunks of roughly equal work,
from what the planner learnt without reading the day.

Inputs, all bounded whatever the day's size (``master/planner.py`` gathers them):

- the day's key ranges (one per salt bucket) and the raw table's **region
  starts**: the ranges cut at the region starts are the *pieces*; a chunk never
  straddles a region boundary (its scan then talks to one region server), so
  every piece holds at least one chunk;
- **guideposts**: an earlier night's map chunks moved onto today (key range,
  rows read), Apache Phoenix's idea: where they exist they say how many rows lie
  where;
- **samples** of the pieces guideposts do not cover: a few bounded probes per
  piece (its first keys, its last key, the first keys after a few points
  interpolated between the two).

Each piece becomes a piecewise-linear *cumulative row count*: knots ``(key,
rows before key)``. Guideposts give a knot at each of their ends; a probe's keys
give exact knots (the i-th key from a point has i rows before it); between probe
points, a stretch the probe read to its end is counted exactly and a longer one
is extrapolated at the piece's pooled density (keys seen per unit of key space,
keys read as big-endian numbers after the piece's common prefix), at most
``EXTRAPOLATION_CAP`` times the keys its probe saw. The piece is
then cut where the cumulative count crosses multiples of its share, at a knot
when one is near, else at a key interpolated between two knots (a cut need not
be a stored key: any key splits a range).

Invariants (property-tested): the chunks partition the ranges exactly, in key
order (no gap, no overlap, every chunk a non-empty range); no chunk straddles a
region start; there are at most ``max(max_chunks, pieces)`` chunks, whatever
the estimates say (PHOENIX-2724: a grid too fine drowns the coordinator). A
wrong estimate makes chunks uneven, never wrong.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

from nightfold.common.keys import KeyRange, common_prefix, move_day

POSITION_BYTES = 24
"""Bytes after a common prefix that key interpolation reads as one number."""
NEAR_KNOT = 0.25
"""A cut snaps to a knot within this share of a chunk from its ideal place."""


@dataclass(frozen=True)
class Guidepost:
    """An earlier night's chunk, moved onto today's day: its range and the rows it held."""

    range: KeyRange
    rows: int


@dataclass(frozen=True)
class Sample:
    """What the bounded probes of one piece saw.

    ``head``: the piece's first keys, at most ``limit`` (fewer: the whole piece).
    ``tail``: its last keys, descending, at most ``limit`` (empty when ``head`` is
    the whole piece). ``probes``: for points between ``head[-1]`` and ``tail[-1]``
    (the first, ``head[-1] + b"\\x00"``; the others :func:`probe_points`), the
    first keys from the point up to the next point (the last: up to
    ``tail[-1]``), at most ``limit`` each: fewer, and that stretch is counted. Anchoring the
    points at the ``limit``-th key from either end keeps a few outlying keys (a
    stray ``garbage-…`` key before every real one) from wasting the probes.
    """

    piece: KeyRange
    limit: int
    head: tuple[bytes, ...]
    tail: tuple[bytes, ...] = ()
    probes: tuple[tuple[bytes, tuple[bytes, ...]], ...] = ()

    @property
    def complete(self) -> bool:
        """Whether ``head`` is every key of the piece (its count is then exact)."""
        return len(self.head) < self.limit

    @property
    def whole(self) -> bool:
        """Whether ``head`` and ``tail`` together are every key of the piece."""
        return self.complete or not self.tail or self.tail[-1] <= self.head[-1]


@dataclass(frozen=True)
class PlannedChunk:
    range: KeyRange
    rows: float
    """Estimated rows (exact for a piece its probes read whole)."""


Knots = list[tuple[bytes, float]]
"""A piece's cumulative row count: ``(key, rows of the piece before key)``, both ascending."""


# -- keys as numbers -----------------------------------------------------------------------


def _frame(lo: bytes, hi: bytes) -> tuple[bytes, int, int]:
    """``(common prefix, lo, hi)``: the two keys as numbers after their common prefix."""
    prefix = common_prefix(lo, hi) if hi else b""
    top = 1 << (8 * POSITION_BYTES)
    return prefix, _number(lo, prefix), _number(hi, prefix) if hi else top


def _number(key: bytes, prefix: bytes) -> int:
    if not key.startswith(prefix):
        return 0 if key < prefix else 1 << (8 * POSITION_BYTES)
    tail = key[len(prefix) : len(prefix) + POSITION_BYTES]
    return int.from_bytes(tail.ljust(POSITION_BYTES, b"\x00"), "big")


def fraction(lo: bytes, hi: bytes, key: bytes) -> float:
    """Where ``key`` lies between ``lo`` and ``hi`` (0..1), keys read as numbers."""
    prefix, a, b = _frame(lo, hi)
    if b <= a:
        return 0.0
    return min(1.0, max(0.0, (_number(key, prefix) - a) / (b - a)))


def key_between(lo: bytes, hi: bytes, share: float) -> bytes | None:
    """A key ``share`` of the way from ``lo`` to ``hi`` (``hi`` empty: unbounded),
    strictly between them; ``None`` when there is none at that precision."""
    prefix, a, b = _frame(lo, hi)
    scaled = int(min(1.0, max(0.0, share)) * (1 << 32))
    value = min(a + ((b - a) * scaled >> 32), (1 << (8 * POSITION_BYTES)) - 1)
    key = prefix + value.to_bytes(POSITION_BYTES, "big").rstrip(b"\x00")
    if key <= lo or (hi and key >= hi):
        return None
    return key


def probe_points(first: bytes, last: bytes, count: int) -> list[bytes]:
    """Up to ``count - 1`` distinct ascending keys strictly between ``first`` and
    ``last``, evenly spaced as numbers: where a piece's probes start."""
    points: list[bytes] = []
    for j in range(1, count):
        key = key_between(first, last, j / count)
        if key is not None and (not points or key > points[-1]):
            points.append(key)
    return points


# -- pieces and their knots ----------------------------------------------------------------


def _check_ranges(ranges: Sequence[KeyRange]) -> None:
    for before, after in pairwise(ranges):
        if not before.end or before.end > after.start:
            raise ValueError(f"key ranges must be sorted and disjoint: {before!r} then {after!r}")


def _check_sorted(name: str, keys: Sequence[bytes]) -> None:
    for before, after in pairwise(keys):
        if after < before:
            raise ValueError(f"{name} must be sorted: {after!r} comes after {before!r}")


def cut_at_regions(key_range: KeyRange, region_starts: Sequence[bytes]) -> list[KeyRange]:
    """``key_range`` cut at every region start strictly inside it: its pieces."""
    lo = bisect_left(region_starts, key_range.start)
    bounds = [key_range.start]
    for cut in region_starts[lo:]:
        if key_range.end and cut >= key_range.end:
            break
        if cut > bounds[-1]:
            bounds.append(cut)
    bounds.append(key_range.end)
    return [KeyRange(a, b) for a, b in pairwise(bounds)]


def pieces(ranges: Sequence[KeyRange], region_starts: Sequence[bytes]) -> list[KeyRange]:
    """Every range cut at the region starts inside it, in key order."""
    _check_ranges(ranges)
    _check_sorted("region_starts", region_starts)
    return [p for r in ranges for p in cut_at_regions(r, region_starts)]


def _overlaps(a: KeyRange, b: KeyRange) -> bool:
    return (not b.end or a.start < b.end) and (not a.end or b.start < a.end)


def covered(piece: KeyRange, guideposts: Sequence[Guidepost]) -> bool:
    """Whether any guidepost overlaps ``piece`` (sorted guideposts)."""
    return bool(_overlapping(piece, guideposts))


def _start(g: Guidepost) -> bytes:
    return g.range.start


def _overlapping(piece: KeyRange, guideposts: Sequence[Guidepost]) -> list[Guidepost]:
    # Guideposts are disjoint, so at most one that starts before the piece reaches into it.
    lo = max(0, bisect_left(guideposts, piece.start, key=_start) - 1)
    hi = bisect_left(guideposts, piece.end, key=_start) if piece.end else len(guideposts)
    return [g for g in guideposts[lo:hi] if _overlaps(g.range, piece)]


def guidepost_knots(piece: KeyRange, guideposts: Sequence[Guidepost]) -> Knots:
    """The piece's cumulative count from the (sorted, disjoint) guideposts: a guidepost
    reaching over a piece boundary counts with the share of it inside, keys as numbers."""
    knots: Knots = [(piece.start, 0.0)]
    total = 0.0
    for g in _overlapping(piece, guideposts):
        lo = max(g.range.start, piece.start)
        hi = g.range.end if not piece.end else min(g.range.end or piece.end, piece.end)
        share = 1.0
        if lo != g.range.start or hi != g.range.end:
            share = fraction(g.range.start, g.range.end, hi or b"\xff" * POSITION_BYTES)
            share -= fraction(g.range.start, g.range.end, lo)
        knots.append((lo, total))
        total += max(0.0, share) * g.rows
        knots.append((hi, total))
    knots.append((piece.end, total))
    return knots


EXTRAPOLATION_CAP = 8
"""An unread stretch is guessed at most this many times the keys its probe saw. The
pooled density overshoots where keys cluster (a probe inside one merchant sees its
keys packed tight and the gap after it is priced at that density): a chaos trial's
5,652-row day was estimated at 2.6M rows and planned as 11,671 empty chunks. Too
high an estimate makes chunks nothing merges again; too low a one makes big chunks,
which run-time splits cut while they run. So the guess is bounded, biased low."""


def sample_knots(sample: Sample) -> Knots:
    """The piece's cumulative count from its probes (module docstring)."""
    piece, head, tail = sample.piece, sample.head, sample.tail
    if sample.whole:
        keys = sorted(set(head) | set(tail))
        ends = [(piece.end, float(len(keys)))]
        return [(piece.start, 0.0), *((k, float(i)) for i, k in enumerate(keys)), *ends]
    lo, hi = head[-1] + b"\x00", tail[-1]
    probes = [(p, found) for p, found in sample.probes if lo <= p < hi]
    bounds = [p for p, _ in probes] + [hi]
    stretches: list[tuple[bytes, bytes, list[bytes], bool]] = []
    for (start, found), stop in zip(probes, bounds[1:], strict=True):
        seen = [k for k in found if start <= k < stop]
        exact = len(seen) < len(found) or len(found) < sample.limit
        stretches.append((start, stop, seen, exact))
    if not probes or probes[0][0] != lo:  # nothing seen right after the head
        stretches.insert(0, (lo, bounds[0], [], False))
    # Pooled density of the stretches the probes did not read to their end.
    prefix = _frame(head[0], sample.tail[0] + b"\x00")[0]
    seen_n = covered_w = 0
    for start, _, seen, exact in stretches:
        if not exact and seen:
            seen_n += len(seen)
            covered_w += _number(seen[-1] + b"\x00", prefix) - _number(start, prefix)
    density = seen_n / covered_w if covered_w > 0 else 0.0
    knots: Knots = [(piece.start, 0.0), *((k, float(i)) for i, k in enumerate(head))]
    cum = float(len(head))
    for start, stop, seen, exact in stretches:
        knots.append((start, cum))
        knots += [(k, cum + i) for i, k in enumerate(seen)]
        rows = float(len(seen))
        if not exact:
            after = seen[-1] + b"\x00" if seen else start
            rest = max(0, _number(stop, prefix) - _number(after, prefix))
            guess = density * rest if density else float(len(seen))
            rows += min(guess, EXTRAPOLATION_CAP * max(len(seen), 1))
        cum += rows
    knots += [(k, cum + i) for i, k in enumerate(reversed(tail))]
    cum += len(tail)
    knots.append((tail[0] + b"\x00", cum))
    knots.append((piece.end, cum))
    return knots


def _clean(knots: Knots, piece: KeyRange) -> Knots:
    """The piece's knots from its start (0 rows) to its end (the total): keys strictly
    inside, ascending (the first of equal keys kept), counts never decreasing."""
    total = max((c for _, c in knots), default=0.0)
    out: Knots = [(piece.start, 0.0)]
    for key, cum in knots:
        if key > out[-1][0] and (not piece.end or key < piece.end):
            out.append((key, max(cum, out[-1][1])))
    out.append((piece.end, max(total, out[-1][1])))
    return out


# -- cutting -------------------------------------------------------------------------------


def _cut_piece(piece: KeyRange, knots: Knots, count: int) -> list[PlannedChunk]:
    """``piece`` in ``count`` chunks of about equal estimated rows (fewer if the
    knots cannot place a cut). ``knots`` as :func:`_clean` makes them."""
    total = knots[-1][1]
    if count <= 1 or total <= 0:
        return [PlannedChunk(piece, total)]
    share = total / count
    cums = [c for _, c in knots]
    cuts: list[tuple[bytes, float]] = []
    for j in range(1, count):
        want = share * j
        i = max(1, bisect_left(cums, want))
        (ka, ca), (kb, cb) = knots[i - 1], knots[i]
        candidates = sorted(
            [(want - ca, ka, ca), (cb - want, kb, cb)][: 2 if cb - want <= want - ca else 1]
        )
        near = [(k, c) for d, k, c in candidates if d <= max(NEAR_KNOT * share, 0.5)]
        between = key_between(ka, kb, (want - ca) / (cb - ca)) if cb > ca else None
        options = near + ([(between, want)] if between is not None else [])
        last = cuts[-1][0] if cuts else piece.start
        for key, at in options:
            if key > last and (not piece.end or key < piece.end):
                cuts.append((key, at))
                break
    bounds = [(piece.start, 0.0), *cuts, (piece.end, total)]
    return [PlannedChunk(KeyRange(a, b), cb - ca) for (a, ca), (b, cb) in pairwise(bounds)]


def _merge_empty(chunks: list[PlannedChunk]) -> list[PlannedChunk]:
    """Chunks of one range with an estimate of 0 rows joined to a neighbour (a chunk
    then straddles a region start, which costs a scan nothing when it is empty)."""
    out: list[PlannedChunk] = []
    for chunk in chunks:
        if out and (chunk.rows <= 0 or out[-1].rows <= 0):
            prev = out.pop()
            chunk = PlannedChunk(
                KeyRange(prev.range.start, chunk.range.end), prev.rows + chunk.rows
            )
        out.append(chunk)
    return out


def plan_chunks(
    ranges: Sequence[KeyRange],
    region_starts: Sequence[bytes],
    guideposts: Sequence[Guidepost],
    samples: Mapping[KeyRange, Sample],
    target_rows: int,
    max_chunks: int,
) -> list[PlannedChunk]:
    """Chunks of about ``target_rows`` estimated rows, in key order, partitioning ``ranges``.

    A piece overlapped by guideposts is estimated from them, else from its sample
    in ``samples`` (keyed by the piece), else it is one chunk of unknown (0)
    rows. ``ranges`` sorted and disjoint (only the last may be unbounded),
    ``region_starts`` sorted, ``guideposts`` sorted and disjoint. At most
    ``max(max_chunks, pieces)`` chunks: past that the chunks grow instead.
    Raises ``ValueError`` on invalid input.
    """
    if target_rows <= 0 or max_chunks <= 0:
        raise ValueError(
            f"target_rows and max_chunks must be positive: {target_rows}, {max_chunks}"
        )
    _check_ranges(ranges)
    _check_sorted("region_starts", region_starts)
    for before, after in pairwise(guideposts):
        if not before.range.end or before.range.end > after.range.start:
            raise ValueError(f"guideposts must be sorted and disjoint: {before!r} then {after!r}")
    per_range = [cut_at_regions(r, region_starts) for r in ranges]
    knots: dict[KeyRange, Knots] = {}
    for piece in (p for ps in per_range for p in ps):
        if covered(piece, guideposts):
            raw = guidepost_knots(piece, guideposts)
        elif piece in samples:
            raw = sample_knots(samples[piece])
        else:
            raw = [(piece.start, 0.0), (piece.end, 0.0)]
        knots[piece] = _clean(raw, piece)
    total = sum(k[-1][1] for k in knots.values())
    spare = max_chunks - len(knots)  # every piece gets one chunk; the rest share these
    per_chunk = max(float(target_rows), total / spare) if spare > 0 else math.inf
    chunks: list[PlannedChunk] = []
    for range_pieces in per_range:
        in_range: list[PlannedChunk] = []
        for piece in range_pieces:
            rows = knots[piece][-1][1]
            # round() <= 1 + floor(): the pieces' floors sum to at most `spare`
            count = max(1, math.floor(rows / per_chunk + 0.5))
            in_range += _cut_piece(piece, knots[piece], count)
        chunks += _merge_empty(in_range)
    return chunks


def estimate_rows(chunks: Sequence[PlannedChunk]) -> int:
    """The plan's estimate of the day's rows (for the log and progress, never for counting)."""
    return round(sum(c.rows for c in chunks))


def moved_guideposts(
    chunks: Sequence[tuple[bytes, bytes, int]], old: dt.date, new: dt.date
) -> list[Guidepost]:
    """An earlier night's chunks ``(start, end, rows)`` of day ``old`` as guideposts
    of day ``new``, sorted; chunks outside ``old``'s ranges and any overlapping an
    earlier one are left out (guideposts are estimates: dropping one is safe)."""
    moved: list[Guidepost] = []
    for start, end, rows in sorted(chunks):
        a, b = move_day(start, old, new), move_day(end, old, new)
        if a is None or b is None or a >= b or rows < 0:
            continue
        if moved and moved[-1].range.end > a:
            continue
        moved.append(Guidepost(KeyRange(a, b), rows))
    return moved


def sample_weights(
    samples: Mapping[KeyRange, Sample], chunks: Sequence[PlannedChunk]
) -> list[tuple[bytes, float]]:
    """Every key the probes saw, each with the rows of the day it stands for: once if
    its piece was read whole, else an even share of the piece's estimated rows (its
    planned chunks'). What the hot-group estimate sums per group
    (``common/jobs/shards.hot_groups``)."""
    ordered = sorted(chunks, key=lambda c: c.range.start)
    starts = [c.range.start for c in ordered]
    cumulative = [0.0, *accumulate(c.rows for c in ordered)]
    weighted: list[tuple[bytes, float]] = []
    for piece, sample in samples.items():
        lo = bisect_left(starts, piece.start)
        hi = bisect_left(starts, piece.end) if piece.end else len(starts)
        keys = [*sample.head, *sample.tail, *(k for _at, got in sample.probes for k in got)]
        if keys:
            rows = cumulative[hi] - cumulative[lo]
            weight = 1.0 if sample.whole else max(1.0, rows / len(keys))
            weighted.extend((k, weight) for k in keys)
    return weighted
