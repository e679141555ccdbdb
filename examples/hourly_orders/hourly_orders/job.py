"""Orders and revenue per hour of the day (UTC), over nightfold's raw order rows.

The same raw table as the built-in ``merchant_daily`` (``o:ts`` seconds since
the epoch, ``o:amount_cents``, ``o:status`` = ``paid`` | ``refunded``), grouped
by hour instead of merchant: 24 groups ``"00"`` .. ``"23"``.

Why it is shaped this way (docs/jobs.md):

- The partial, :class:`HourTotals`, holds only sums. Adding sums is associative
  and commutative, so ``merge`` gives the same totals whatever the chunking, the
  number of workers, retries or the order partials arrive in.
- ``encode`` writes integers in a fixed order (canonical bytes): equal partials
  give equal bytes, so a retried chunk rewrites its partial byte for byte and
  the summaries are byte-identical from run to run.
- The mean is derived in ``finalize`` from the sums, never merged itself (a mean
  of means is wrong), and rounded with integers (no float formatting).
- A row it cannot read is quarantined with a reason (``MapOutput.rejects``),
  never silently dropped: ``nightfold quarantine`` lists it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass

from nightfold import Job, MapOutput

TS = b"o:ts"
AMOUNT = b"o:amount_cents"
STATUS = b"o:status"
FORMAT = b"h1"
"""Version tag of the encoded partial: change it when the encoding changes."""


@dataclass(frozen=True, slots=True)
class HourTotals:
    """One hour's fold of some rows: counts and sums in cents."""

    paid_orders: int = 0
    paid_cents: int = 0
    refunds: int = 0
    refunded_cents: int = 0

    def __add__(self, other: HourTotals) -> HourTotals:
        return HourTotals(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def _reason(cols: Mapping[bytes, bytes]) -> str | None:
    """Why a row cannot be counted, or ``None`` when it can."""
    ts, amount, status = cols.get(TS, b""), cols.get(AMOUNT, b""), cols.get(STATUS, b"")
    if not ts.isdigit():
        return "bad_ts"
    if not amount.isdigit() or len(amount) > 18:
        return "bad_amount"
    if status not in (b"paid", b"refunded"):
        return "bad_status"
    return None


class HourlyOrders(Job[HourTotals]):
    """Paid orders, revenue, refunds per hour of the day."""

    name = "hourly_orders"
    summary_table = "hourly_orders_summary"
    """Its own table: summary rows are keyed ``day|group`` and would collide with
    another job's groups in a shared table."""

    def map_rows(
        self, rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]], out: MapOutput[HourTotals]
    ) -> None:
        for key, cols in rows:
            out.rows_read += 1
            reason = _reason(cols)
            if reason is not None:
                out.rows_malformed += 1
                out.rejects.append((key, reason))
                continue
            hour = f"{int(cols[TS]) // 3600 % 24:02d}"
            amount = int(cols[AMOUNT])
            if cols[STATUS] == b"paid":
                delta = HourTotals(paid_orders=1, paid_cents=amount)
            else:
                delta = HourTotals(refunds=1, refunded_cents=amount)
            out.partials[hour] = out.partials.get(hour, HourTotals()) + delta

    def merge(self, a: HourTotals, b: HourTotals) -> HourTotals:
        return a + b

    def encode(self, partial: HourTotals) -> bytes:
        return b",".join([FORMAT, *(b"%d" % v for v in astuple(partial))])

    def decode(self, data: bytes) -> HourTotals:
        tag, *values = data.split(b",")
        if tag != FORMAT or len(values) != 4:
            raise ValueError(f"not an hourly_orders partial: {data[:40]!r}")
        return HourTotals(*(int(v) for v in values))

    def finalize(self, group: str, partial: HourTotals) -> dict[bytes, bytes]:
        p = partial
        cells = {
            b"s:paid_orders": b"%d" % p.paid_orders,
            b"s:paid_cents": b"%d" % p.paid_cents,
            b"s:refunds": b"%d" % p.refunds,
            b"s:refunded_cents": b"%d" % p.refunded_cents,
        }
        if p.paid_orders:  # mean paid order, rounded half up, in integers
            cells[b"s:mean_paid_cents"] = b"%d" % (
                (2 * p.paid_cents + p.paid_orders) // (2 * p.paid_orders)
            )
        return cells
