"""Splitting a day's key ranges into chunks of roughly equal work.

A pure function of (ranges, region boundaries, sampled keys, target size), so
that planning is reproducible and testable without a cluster. Chunks never
straddle a region boundary (a scan then talks to one region server), and inside
a region they are cut at sampled keys: sample ``i`` stands for the ~``sample_every``
rows from it up to the next sample, so ``k = ceil(target_rows / sample_every)``
samples make one chunk's worth.

The output partitions the input exactly (no gaps, no overlaps, every chunk a
non-empty key range): rows the sampling never saw still land in some chunk.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise

from nightfold.common.keys import KeyRange


def _check_sorted(name: str, keys: Sequence[bytes]) -> None:
    for before, after in pairwise(keys):
        if after < before:
            raise ValueError(f"{name} must be sorted: {after!r} comes after {before!r}")


def _check_ranges(ranges: Sequence[KeyRange]) -> None:
    for before, after in pairwise(ranges):
        if not before.end or before.end > after.start:
            raise ValueError(f"key ranges must be sorted and disjoint: {before!r} then {after!r}")


def _pieces(key_range: KeyRange, region_starts: Sequence[bytes]) -> list[KeyRange]:
    """``key_range`` cut at every region start strictly inside it."""
    lo = bisect_left(region_starts, key_range.start)
    bounds = [key_range.start]
    for cut in region_starts[lo:]:
        if key_range.end and cut >= key_range.end:
            break
        if cut > bounds[-1]:
            bounds.append(cut)
    bounds.append(key_range.end)
    return [KeyRange(a, b) for a, b in pairwise(bounds)]


def _sample_span(piece: KeyRange, samples: Sequence[bytes]) -> tuple[int, int]:
    """Indices ``[lo, hi)`` of the samples inside ``piece``."""
    lo = bisect_left(samples, piece.start)
    hi = bisect_left(samples, piece.end) if piece.end else len(samples)
    return lo, hi


def _cut_piece(piece: KeyRange, keys: Sequence[bytes], per_chunk: int) -> list[KeyRange]:
    """Cut ``piece`` at distinct sorted sample ``keys`` inside it, <= ``per_chunk`` keys a chunk.

    The keys are spread evenly over ``ceil(n / per_chunk)`` chunks rather than
    cut every ``per_chunk`` keys, so there is no runt chunk at the end: with
    ``n >= per_chunk`` every chunk holds between ``per_chunk // 2`` and
    ``per_chunk`` samples.
    """
    n = len(keys)
    count = max(1, -(-n // per_chunk))
    bounds = [piece.start]
    bounds += [keys[j * n // count] for j in range(1, count)]  # index >= 1: > keys[0] >= start
    bounds.append(piece.end)
    return [KeyRange(a, b) for a, b in pairwise(bounds)]


def split(
    ranges: Sequence[KeyRange],
    region_starts: Sequence[bytes],
    samples: Sequence[bytes],
    sample_every: int,
    target_rows: int,
) -> list[KeyRange]:
    """Chunks of about ``target_rows`` rows, in key order, partitioning ``ranges``.

    ``ranges`` must be sorted and disjoint (only the last may be unbounded);
    ``region_starts`` and ``samples`` sorted (duplicates and keys outside every
    range are ignored). A range or region piece without samples still becomes
    one chunk. Raises ``ValueError`` on invalid input.
    """
    if sample_every <= 0:
        raise ValueError(f"sample_every must be positive, got {sample_every}")
    if target_rows <= 0:
        raise ValueError(f"target_rows must be positive, got {target_rows}")
    _check_ranges(ranges)
    _check_sorted("region_starts", region_starts)
    _check_sorted("samples", samples)
    per_chunk = -(-target_rows // sample_every)
    chunks: list[KeyRange] = []
    for key_range in ranges:
        for piece in _pieces(key_range, region_starts):
            lo, hi = _sample_span(piece, samples)
            keys = sorted(set(samples[lo:hi]))
            chunks += _cut_piece(piece, keys, per_chunk)
    return chunks


def estimate_rows(chunk: KeyRange, samples: Sequence[bytes], sample_every: int) -> int:
    """About how many rows ``chunk`` holds (samples inside it x ``sample_every``), for logs."""
    lo, hi = _sample_span(chunk, samples)
    return (hi - lo) * sample_every
