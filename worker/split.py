"""Where to cut a running map chunk: a key that halves its remaining rows.

The owner knows where it is (the keys it has read) and where its chunk ends,
not how the rows in between are spread: a hot merchant can hold most of them in
a sliver of the key space, so interpolating between the two keys (as HBase's
``Bytes.split`` or Beam's ``ByteKeyRange.interpolateKey`` do) can cut where one
side is nearly empty. So :func:`choose_cut` looks, within a fixed budget of
cheap probes, at the real keys: a probe seeks to a key and reads the next few
keys (one short keys-only scan). It

1. bounds the remaining range by the longest key prefix all its rows share
   (a binary search over the prefix's length, one probe a step), then finds its
   last row by bisection with one-key probes;
2. estimates the rows between the first and the last by probes that read a few
   keys each: an interval whose probe read past its end is counted exactly, one
   whose probe did not is extrapolated from the density the probe saw, and the
   largest extrapolated interval is bisected again until the budget is spent (so
   the edge of a hot block gets found);
3. cuts at the first real key at or after the estimated median.

The cut is always a real key beyond everything the owner has read, so neither
side is empty. The estimate is only an estimate: a poor cut just means another
split later (the master asks again while workers are idle). Pure given the
probe, so it is tested against sorted key lists (``tests/unit/test_split_cut.py``).
"""

from __future__ import annotations

import contextlib
import itertools
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from nightfold.common.keys import KeyRange, common_prefix, prefix_range
from nightfold.common.store.base import Store

Probe = Callable[[bytes, int], list[bytes]]
"""``probe(key, n)``: up to ``n`` row keys ``>= key`` (and before the chunk's end), in order."""

WIDTH = 32
"""Bytes after the common prefix that positions are computed on (finer differences
are below the resolution of an estimate anyway)."""
DENSITY_PROBES = 32
FIRST_GRID = 16
FIND_END_PROBES = 16
SHAPE_PROBES = 8
KEYS_PER_PROBE = 32


@dataclass(frozen=True)
class Cut:
    """A chosen cut and the estimated rows on each side of it."""

    key: bytes
    head_rows: float
    """Estimated rows from the owner's position up to the cut (the owner keeps these)."""
    tail_rows: float
    """Estimated rows from the cut to the chunk's end (the new chunk)."""
    probes: int


class _Space:
    """Keys as integers: the first ``WIDTH`` bytes after a common prefix, each byte
    as a digit of a mixed radix whose alphabet at that position is the bytes seen
    there (so ASCII digits count as base 10, not as 10 of 256 values: a decimal id
    is then spread evenly, and a density measured in one place extrapolates).
    Monotone -- a larger key never maps lower: a key with a byte outside a
    position's alphabet maps to the lowest (or highest) position of the bytes before
    it -- and :meth:`key` gives a key of a position, so a probe aimed there finds
    the keys past it (one at the same position may be missed, which only blurs the
    estimate: cuts are real keys whatever the estimate). A position that showed a digit may
    hold any digit between the smallest and the largest seen: see :func:`_alphabet`."""

    def __init__(self, prefix: bytes, seen: list[bytes], *, all_digits: bool = False) -> None:
        """``all_digits``: a position that showed a digit may hold any (a first,
        rough space, before the probes have seen the keys' shape)."""
        self.prefix = prefix
        n = len(prefix)
        self.alphabets = [
            _alphabet({k[n + i] for k in seen if len(k) > n + i}, all_digits) for i in range(WIDTH)
        ]
        self.radix = [max(1, len(a)) for a in self.alphabets]
        self.top = 1
        for r in self.radix:
            self.top *= r

    def pos(self, key: bytes) -> int:
        if not key.startswith(self.prefix):
            return 0 if key < self.prefix else self.top
        tail = key[len(self.prefix) :]
        value = 0
        rest = 0  # past a byte not in the alphabet: 0 the lowest digits, -1 the highest
        for i, (alphabet, radix) in enumerate(zip(self.alphabets, self.radix, strict=True)):
            if rest:
                digit = 0 if rest > 0 else radix - 1
            elif i >= len(tail) or not alphabet:
                digit, rest = 0, 1
            else:
                at = bisect_right(alphabet, tail[i]) - 1
                if at < 0:  # below the alphabet: the lowest of its prefix
                    digit, rest = 0, 1
                else:  # in it, or past alphabet[at]: the highest of that digit
                    digit = at
                    rest = 0 if alphabet[at] == tail[i] else -1
            value = value * radix + digit
        return value

    def key(self, pos: int) -> bytes:
        pos = max(0, min(pos, self.top - 1))
        digits = []
        for radix in reversed(self.radix):
            pos, d = divmod(pos, radix)
            digits.append(d)
        digits.reverse()
        out = bytearray()
        for alphabet, d in zip(self.alphabets, digits, strict=True):
            if not alphabet:
                break
            out.append(alphabet[d])
        return self.prefix + bytes(out)


_DIGITS = range(0x30, 0x3A)


def _alphabet(seen: set[int], all_digits: bool) -> list[int]:
    """The bytes a position may hold, from the bytes the probes saw there: those,
    and every digit between the smallest and the largest digit seen (row keys carry
    zero-padded numbers -- ids, times -- of which the probes see only some), or
    every digit at all with ``all_digits``."""
    digits = [b for b in seen if b in _DIGITS]
    if all_digits and digits:
        seen = seen | set(_DIGITS)
    elif len(digits) >= 2:
        seen = seen | set(range(min(digits), max(digits) + 1))
    return sorted(seen)


def choose_cut(start: bytes, end: bytes, probe: Probe, min_rows: int) -> Cut | None:
    """A cut of the remaining range ``[start, end)`` (``end`` empty: unbounded) that
    halves its rows by estimate, or None when either side would hold fewer than
    ``min_rows`` (then a split is not worth a chunk)."""
    calls = 0

    def look(key: bytes, n: int) -> list[bytes]:
        nonlocal calls
        calls += 1
        return [k for k in probe(key, n) if k >= start and (not end or k < end)]

    first_keys = look(start, KEYS_PER_PROBE)
    if len(first_keys) < 2:
        return None
    first = first_keys[0]
    bound = _tighten(first_keys[-1], end, look)
    seen = [*first_keys, bound]
    # a first, rough space (any digit anywhere a digit was seen) to find the last
    # row and see the shape of the keys across the range
    rough = _Space(common_prefix(first, bound), seen, all_digits=True)
    last = _find_last(rough, first_keys[-1], bound, look, seen)
    if last <= first:
        return None
    prefix = common_prefix(first, last)
    rough = _Space(prefix, seen, all_digits=True)
    a, b = rough.pos(first), rough.pos(last)
    for i in range(1, SHAPE_PROBES):
        seen += look(rough.key(a + (b - a) * i // SHAPE_PROBES), KEYS_PER_PROBE)
    space = _Space(prefix, seen)
    lo, hi = space.pos(first), space.pos(last) + 1
    grid = _estimate(space, lo, hi, look)
    total = sum(n for _, _, n, _ in grid)
    if total < 2 * min_rows:
        return None
    # the estimated median position, then the first real key at or after it
    half, below = total / 2, 0.0
    target = hi - 1
    for a, b, n, _ in grid:
        if below + n >= half:
            target = a + int((b - a) * ((half - below) / n)) if n else a
            break
        below += n
    found = look(space.key(target), 1) or look(space.key(lo + (target - lo) // 2), 1)
    if not found:
        return None
    cut = found[0]
    if cut <= first:  # the owner must keep at least its next row
        later = look(first + b"\x00", 1)
        if not later:
            return None
        cut = later[0]
    cut_pos = space.pos(cut)
    head = sum(_part(a, b, n, cut_pos) for a, b, n, _ in grid)
    tail = total - head
    if head < min_rows or tail < min_rows:
        return None
    return Cut(cut, head, tail, calls)


def _find_last(
    space: _Space,
    known: bytes,
    bound: bytes,
    look: Callable[[bytes, int], list[bytes]],
    seen: list[bytes],
) -> bytes:
    """The last key before ``bound`` (approximately), by bisecting between the last
    key known to exist and the bound with one-key probes; the keys met are added to
    ``seen``."""
    a, b = space.pos(known), space.pos(bound)
    enough = (b - a) >> FIND_END_PROBES  # finer is the density estimate's job
    for _ in range(FIND_END_PROBES):
        mid = (a + b) // 2
        if mid <= a or b - a <= enough:
            break
        found = look(space.key(mid), 1)
        if found and found[0] > known:
            seen.append(found[0])
            known = found[0]
            a = max(mid, space.pos(known))
        else:
            b = mid
    return known


def _tighten(known: bytes, end: bytes, look: Callable[[bytes, int], list[bytes]]) -> bytes:
    """An upper bound of the keys from ``known`` on, closer than ``end``: the end of
    the longest prefix of ``known`` that every remaining key shares (a binary search
    over the prefix length, one probe a step), so the bisection starts past it."""
    best = end or b"\xff" * (len(known) + 1)
    lo, hi = 0, len(known)  # the longest shared prefix has a length in [lo, hi]
    while lo < hi:
        k = (lo + hi + 1) // 2
        after = prefix_range(known[:k]).end
        if after and (not end or after < end) and look(after, 1):
            hi = k - 1  # keys beyond the prefix: the shared one is shorter
        else:
            lo = k
            if after and (not end or after < end):
                best = after
    return best


def _estimate(
    space: _Space, lo: int, hi: int, look: Callable[[bytes, int], list[bytes]]
) -> list[tuple[int, int, float, bool]]:
    """Intervals ``(a, b, rows, exact)`` covering ``[lo, hi)``.

    A probe at every point of an even grid reads a few keys: an interval whose
    probe read past its end is counted exactly; any other one is estimated from
    the densities its two ends' probes saw (a trapezoid). Then the interval whose
    ends disagree most (the edge of a hot block, say) is bisected with one more
    probe, until the budget is spent. Uniform sampling first keeps the estimate's
    bias (a sparse id space) the same everywhere, so the median stays right.
    """
    density: dict[int, tuple[list[int], float]] = {}

    def probe_at(p: int) -> tuple[list[int], float]:
        if p not in density:
            ks = [space.pos(k) for k in look(space.key(p), KEYS_PER_PROBE)]
            full = len(ks) == KEYS_PER_PROBE
            density[p] = (ks, len(ks) / max(1, ks[-1] - p + 1) if full else 0.0)
        return density[p]

    def interval(a: int, b: int) -> tuple[int, int, float, bool]:
        ks, d_a = probe_at(a)
        inside = sum(1 for k in ks if k < b)
        if len(ks) < KEYS_PER_PROBE or inside < len(ks):
            return a, b, float(inside), True
        d_b = probe_at(b)[1] if b < hi else d_a
        return a, b, max(float(inside), (b - a) * (d_a + d_b) / 2), False

    def doubt(a: int, b: int) -> float:
        d_a = probe_at(a)[1]
        d_b = probe_at(b)[1] if b < hi else d_a
        return abs(d_a - d_b) * (b - a)

    step = max(1, (hi - lo) // FIRST_GRID)
    bounds = sorted({*range(lo, hi, step), hi})
    grid = [interval(a, b) for a, b in itertools.pairwise(bounds)]
    for _ in range(DENSITY_PROBES):
        rough = [
            (doubt(a, b), i) for i, (a, b, _, exact) in enumerate(grid) if not exact and b - a > 1
        ]
        if not rough or max(rough)[0] <= 0:
            break
        _, i = max(rough)
        a, b, _, _ = grid[i]
        mid = (a + b) // 2
        grid[i : i + 1] = [interval(a, mid), interval(mid, b)]
    return grid


def _part(a: int, b: int, n: float, cut: int) -> float:
    """The estimated rows of interval ``[a, b)`` (``n`` in all) that lie before ``cut``."""
    if cut <= a:
        return 0.0
    if cut >= b:
        return n
    return n * (cut - a) / (b - a)


def store_probe(store: Store, table: str, end: bytes, batch: int = KEYS_PER_PROBE) -> Probe:
    """A :data:`Probe` over ``store``: one short keys-only scan from the key, fetching at
    most ``batch`` keys a round trip."""

    def probe(key: bytes, n: int) -> list[bytes]:
        if end and key >= end:
            return []
        size = max(1, min(n, batch))
        scan = store.scan(table, KeyRange(key, end), keys_only=True, batch_size=size)
        with contextlib.closing(scan):  # type: ignore[type-var]
            return [k for k, _ in itertools.islice(scan, n)]

    return probe
