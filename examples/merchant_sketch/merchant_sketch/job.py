"""Per merchant: exact orders and revenue, sketched distinct customers and quantiles.

The same raw table as the built-in ``merchant_daily`` (rows
``SS|YYYYMMDD|merchant|order``; ``o:customer``, ``o:amount_cents``, ``o:status`` =
``paid`` | ``refunded``), but it *chooses* estimates for the statistics whose
exact form grows with a merchant (docs/jobs.md, "Sketches"):

- ``distinct_customers`` from a HyperLogLog sketch (``nightfold.sketches.DistinctCount``):
  about 4 KB per merchant instead of one entry per customer;
- ``p50_order_cents``, ``p95_order_cents``, ``p99_order_cents`` from a KLL sketch
  (``nightfold.sketches.Quantiles``) over the valid orders' amounts.

Each estimate is stored with ``<field>_bounds`` = ``[lo, hi]`` beside it, and the
job lists them in ``sketched``: ``nightfold verify`` recomputes them exactly with
:meth:`MerchantSketch.exact_twin` (:class:`MerchantExact`, a set and a sorted
list, as only an oracle can afford) and checks each exact value against its
bounds, while ``orders`` and ``revenue_cents`` are compared byte for byte.

A row it cannot read is quarantined with a reason, never dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nightfold import Job, MapOutput
from nightfold.sketches import DistinctCount, Quantiles

CUSTOMER = b"o:customer"
AMOUNT = b"o:amount_cents"
STATUS = b"o:status"
FORMAT = 1
QUANTILES = {"p50_order_cents": 0.5, "p95_order_cents": 0.95, "p99_order_cents": 0.99}
SKETCHED = frozenset({"distinct_customers", *QUANTILES})


def _read(key: bytes, cols: Mapping[bytes, bytes]) -> tuple[str | None, str | None]:
    """(merchant, reason): the row's merchant when the key names one, and why the row
    cannot be counted (``None`` when it can)."""
    parts = key.split(b"|")
    if len(parts) != 4 or not all(parts):
        return None, "bad_key"
    try:
        merchant = parts[2].decode()
    except UnicodeDecodeError:
        return None, "bad_key"
    amount, status = cols.get(AMOUNT, b""), cols.get(STATUS, b"")
    if not cols.get(CUSTOMER):
        return merchant, "missing_customer"
    if not amount.isdigit() or len(amount) > 15:  # KLL keeps doubles: integers below 2**53
        return merchant, "bad_amount"
    if status not in (b"paid", b"refunded"):
        return merchant, "bad_status"
    return merchant, None


@dataclass(slots=True)
class Sketched:
    """One merchant's fold: exact counts, and two sketches of constant size."""

    orders: int = 0
    revenue_cents: int = 0
    customers: DistinctCount = field(default_factory=DistinctCount)
    amounts: Quantiles = field(default_factory=Quantiles)


class MerchantSketch(Job[Sketched]):
    """Per merchant: orders, revenue (exact), distinct customers and quantiles (sketched)."""

    name = "merchant_sketch"
    summary_table = "merchant_sketch_summary"
    sketched = SKETCHED

    def map_rows(
        self, rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]], out: MapOutput[Sketched]
    ) -> None:
        for key, cols in rows:
            out.rows_read += 1
            merchant, reason = _read(key, cols)
            if reason is not None:
                out.rows_malformed += 1
                out.rejects.append((key, reason))
                continue
            assert merchant is not None
            p = out.partials.get(merchant)
            if p is None:
                p = out.partials[merchant] = Sketched()
            amount = int(cols[AMOUNT])
            p.orders += 1
            if cols[STATUS] == b"paid":
                p.revenue_cents += amount
            p.customers.add(cols[CUSTOMER])
            p.amounts.add(amount)

    def merge(self, a: Sketched, b: Sketched) -> Sketched:
        return Sketched(
            a.orders + b.orders,
            a.revenue_cents + b.revenue_cents,
            a.customers.merged(b.customers),
            a.amounts.merged(b.amounts),
        )

    def merge_into(self, acc: Sketched, other: Sketched) -> Sketched:
        acc.orders += other.orders
        acc.revenue_cents += other.revenue_cents
        acc.customers = acc.customers.merged(other.customers)
        acc.amounts.merge_into(other.amounts)
        return acc

    def encode(self, partial: Sketched) -> bytes:
        return json.dumps(
            [
                FORMAT,
                partial.orders,
                partial.revenue_cents,
                partial.customers.to_bytes().hex(),
                partial.amounts.to_bytes().hex(),
            ],
            separators=(",", ":"),
        ).encode("ascii")

    def decode(self, data: bytes) -> Sketched:
        try:
            version, orders, revenue, customers, amounts = json.loads(data)
            if version != FORMAT:
                raise ValueError(f"partial format {version}, expected {FORMAT}")
            return Sketched(
                int(orders),
                int(revenue),
                DistinctCount.from_bytes(bytes.fromhex(customers)),
                Quantiles.from_bytes(bytes.fromhex(amounts)),
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"not a merchant_sketch partial: {exc}") from exc

    def finalize(self, group: str, partial: Sketched) -> dict[bytes, bytes]:
        return {
            b"s:orders": b"%d" % partial.orders,
            b"s:revenue_cents": b"%d" % partial.revenue_cents,
            **partial.customers.cells("distinct_customers"),
            **partial.amounts.cells(QUANTILES),
        }

    def exact_twin(self) -> MerchantExact:
        return MerchantExact()


@dataclass(slots=True)
class Exact:
    """The oracle's fold: every customer and every amount (verify only)."""

    orders: int = 0
    revenue_cents: int = 0
    customers: set[bytes] = field(default_factory=set)
    amounts: list[int] = field(default_factory=list)


class MerchantExact(Job[Exact]):
    """:class:`MerchantSketch` with its sketched fields computed exactly (nearest rank,
    as KLL's inclusive quantiles), for ``nightfold verify``; never registered."""

    name = "merchant_sketch_exact"
    summary_table = MerchantSketch.summary_table

    def map_rows(
        self, rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]], out: MapOutput[Exact]
    ) -> None:
        for key, cols in rows:
            out.rows_read += 1
            merchant, reason = _read(key, cols)
            if reason is not None:
                out.rows_malformed += 1
                out.rejects.append((key, reason))
                continue
            assert merchant is not None
            p = out.partials.get(merchant)
            if p is None:
                p = out.partials[merchant] = Exact()
            amount = int(cols[AMOUNT])
            p.orders += 1
            if cols[STATUS] == b"paid":
                p.revenue_cents += amount
            p.customers.add(cols[CUSTOMER])
            p.amounts.append(amount)

    def merge(self, a: Exact, b: Exact) -> Exact:
        return Exact(
            a.orders + b.orders,
            a.revenue_cents + b.revenue_cents,
            a.customers | b.customers,
            a.amounts + b.amounts,
        )

    def encode(self, partial: Exact) -> bytes:  # the oracle never stores a partial
        raise NotImplementedError

    def decode(self, data: bytes) -> Exact:
        raise NotImplementedError

    def finalize(self, group: str, partial: Exact) -> dict[bytes, bytes]:
        cells = {
            b"s:orders": b"%d" % partial.orders,
            b"s:revenue_cents": b"%d" % partial.revenue_cents,
            b"s:distinct_customers": b"%d" % len(partial.customers),
        }
        ordered = sorted(partial.amounts)
        for name, rank in QUANTILES.items():
            if ordered:
                nearest = ordered[max(1, math.ceil(rank * len(ordered))) - 1]
                cells[b"s:" + name.encode()] = b"%d" % nearest
        return cells
