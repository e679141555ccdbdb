"""Mergeable sketches for the statistics a job chooses to estimate (issue 16).

An exact distinct count or quantile needs every distinct value (nightfold keeps
those exact by sharding them, ``Job.sharded``); a sketch answers in constant
memory, a few KB per group whatever its size, within a bound. These wrap the
Apache DataSketches library (``datasketches`` on PyPI) with what a nightfold
partial needs: ``add``, a non-mutating ``merged``, bytes for ``encode`` /
``decode``, and the summary cells -- the estimate under ``s:<field>`` and,
beside it, ``s:<field>_bounds`` = ``[lo, hi]``, which ``nightfold verify``
checks the exact value against (a job lists these fields in ``Job.sketched``).

The bounds (docs/jobs.md):

- :class:`DistinctCount`: HyperLogLog, ``lg_k = 12`` (4,096 registers, HLL_8,
  about 4 KB): relative standard error about 1.6 %; exact below a few hundred
  values (coupon mode). The bounds are the sketch's own at 3 standard
  deviations (about 99.7 % confidence). The estimate is taken from a union (the
  order-free estimator), but the sketch's mode changes (coupons, then registers)
  depend on how the day was cut, so two chunkings can give estimates a unit or
  so apart -- always within bounds.
- :class:`Quantiles`: KLL, ``k = 200`` (about 2-5 KB): normalized rank error
  ``eps`` about 1.33 % at 99 % confidence; exact while a group has at most
  ``k`` values. The bounds of quantile ``q`` are the sketch's quantiles at
  ``q - eps`` and ``q + eps`` (a single value when exact). KLL compacts with
  random coin flips, so an estimate can differ between two runs of the same
  day (always within its bounds, which verify checks); the exact fields of a
  job stay byte-identical.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import datasketches as ds

HLL_LG_K = 12
HLL_STD_DEVS = 3
KLL_K = 200
_HLL_8 = ds.tgt_hll_type.HLL_8


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def _number(x: float) -> int | float:
    """An integral float as an int (so integer values print as integers)."""
    return int(x) if math.isfinite(x) and x == int(x) else x


class DistinctCount:
    """An approximate distinct count of byte strings (HyperLogLog)."""

    __slots__ = ("sketch",)

    def __init__(self, sketch: ds.hll_sketch | None = None) -> None:
        self.sketch = sketch if sketch is not None else ds.hll_sketch(HLL_LG_K, _HLL_8)

    def add(self, value: bytes) -> None:
        # latin-1 maps bytes to str one to one; the library hashes its UTF-8 bytes
        self.sketch.update(value.decode("latin-1"))

    def _union(self, *others: DistinctCount) -> ds.hll_sketch:
        union = ds.hll_union(HLL_LG_K)
        union.update(self.sketch)
        for other in others:
            union.update(other.sketch)
        return union.get_result(_HLL_8)

    def merged(self, other: DistinctCount) -> DistinctCount:
        """A new sketch of both inputs' values; neither input changes."""
        return DistinctCount(self._union(other))

    def to_bytes(self) -> bytes:
        return bytes(self.sketch.serialize_compact())

    @classmethod
    def from_bytes(cls, data: bytes) -> DistinctCount:
        return cls(ds.hll_sketch.deserialize(data))

    def result(self) -> tuple[int, int, int]:
        """(estimate, lower bound, upper bound) as integers: a count is an integer, so
        the bounds are the integers within the sketch's real-valued bounds."""
        r = self._union()  # the union's estimator, which does not depend on update order
        lo, hi = r.get_lower_bound(HLL_STD_DEVS), r.get_upper_bound(HLL_STD_DEVS)
        return round(r.get_estimate()), math.ceil(lo - 1e-9), math.floor(hi + 1e-9)

    def cells(self, field: str) -> dict[bytes, bytes]:
        """``s:<field>`` (the estimate) and ``s:<field>_bounds``."""
        estimate, lo, hi = self.result()
        column = b"s:" + field.encode()
        return {column: b"%d" % estimate, column + b"_bounds": _json([lo, hi])}


class Quantiles:
    """Approximate quantiles of numbers (KLL, doubles: integers exact below 2**53)."""

    __slots__ = ("sketch",)

    def __init__(self, sketch: ds.kll_doubles_sketch | None = None) -> None:
        self.sketch = sketch if sketch is not None else ds.kll_doubles_sketch(KLL_K)

    def add(self, value: float) -> None:
        self.sketch.update(value)

    def merged(self, other: Quantiles) -> Quantiles:
        """A new sketch of both inputs' values; neither input changes."""
        out = ds.kll_doubles_sketch.deserialize(self.sketch.serialize())
        out.merge(other.sketch)
        return Quantiles(out)

    def merge_into(self, other: Quantiles) -> Quantiles:
        """Fold ``other`` into this sketch (for a reducer that owns it)."""
        self.sketch.merge(other.sketch)
        return self

    @property
    def count(self) -> int:
        return int(self.sketch.n)

    def rank_error(self) -> float:
        """The normalized rank error of a single quantile (0 while exact)."""
        return self.sketch.normalized_rank_error(False) if self.sketch.is_estimation_mode() else 0.0

    def to_bytes(self) -> bytes:
        return bytes(self.sketch.serialize())

    @classmethod
    def from_bytes(cls, data: bytes) -> Quantiles:
        return cls(ds.kll_doubles_sketch.deserialize(data))

    def cells(self, fields: Mapping[str, float]) -> dict[bytes, bytes]:
        """For each ``field -> rank`` (e.g. ``{"p95_order_cents": 0.95}``): ``s:<field>``,
        the nearest-rank quantile estimate, and ``s:<field>_bounds``; nothing when empty."""
        if self.sketch.is_empty():
            return {}
        eps = self.rank_error()
        out: dict[bytes, bytes] = {}
        for field, rank in fields.items():
            column = b"s:" + field.encode()
            estimate = self.sketch.get_quantile(rank, True)
            lo = self.sketch.get_quantile(max(0.0, rank - eps), True)
            hi = self.sketch.get_quantile(min(1.0, rank + eps), True)
            out[column] = _json(_number(estimate))
            out[column + b"_bounds"] = _json([_number(lo), _number(hi)])
        return out
