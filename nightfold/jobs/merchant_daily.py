"""The built-in job: per-merchant daily order analytics.

Raw rows are keyed ``SS|YYYYMMDD|<merchant>|<order_id>`` with the columns
``o:merchant``, ``o:customer``, ``o:product``, ``o:amount_cents``,
``o:currency``, ``o:status`` (``paid`` | ``refunded``) and ``o:ts``.

The partial keeps only exact, mergeable structures (amount -> count counters,
sets, sums per product), so every statistic, quantiles included, is exact and
byte-identical however the day is chunked, ordered or retried. Malformed rows
are never dropped: each one counts once, under the first reason that applies
(checked in the order below), into its merchant's partial when the merchant
can be told (the key's merchant part, else the ``o:merchant`` column), else
into the group ``~invalid``.

    bad_key             key is not 4 non-empty ``|``-separated parts, or not all UTF-8
    missing_<column>    a column is absent or empty, e.g. ``missing_amount_cents``
    merchant_mismatch   the key's merchant differs from ``o:merchant``
    bad_amount          not ASCII digits, or more than 18 of them (beyond int64 cents)
    bad_status          neither ``paid`` nor ``refunded``
    bad_currency        not 3 uppercase ASCII letters
    bad_ts              not an integer (ASCII digits with an optional leading ``-``)

Summary cells (``s:<field>``; integers in decimal, lists and dicts as compact
sorted JSON): ``orders``, ``paid_orders``, ``revenue_cents``, ``refunds``,
``refunded_cents``, ``distinct_customers``, ``currencies``, ``top_products``
(``[[product, revenue_cents], ...]``), ``malformed``, ``malformed_reasons``;
and, only when the group has at least one valid order, ``min_order_cents``,
``max_order_cents``, ``mean_order_cents`` (rounded half up), ``p50_order_cents``
and ``p95_order_cents`` (nearest rank).

Sharding (``sharded = True``): the merchants the planner's probed keys show at
``chunk_rows`` rows or more (``group_of_key``: the key's merchant part) are hot.
A hot merchant's customers and per-product revenue are split by ``crc32(id) %
shards`` (:func:`nightfold.common.jobs.shards.shard_of`); its order counters,
currencies and malformed counts go to shard 0. So no reduce item holds more
than one shard of a merchant, however big it is. A merged shard is compacted
to its customer count and its top ten products; the combine stage adds the
counts and takes the top ten of the tops. The order-value histogram (``amount
-> count``) stays whole in shard 0: it grows with the distinct amounts (cents),
not with customers or products. Other merchants travel whole, as before.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zlib import crc32

from nightfold.common.jobs.base import Job, MapOutput

INVALID_GROUP = "~invalid"
"""Where malformed rows go when no merchant can be told; sorts after every id."""

TOP_PRODUCTS = 10
MAX_AMOUNT_DIGITS = 18
FORMAT_VERSION = 2
"""v2 joins the ids of a list into one string (v1, one string per id, is still read)."""
ID_SEP = b"\n"

BAD_KEY = "bad_key"
MERCHANT_MISMATCH = "merchant_mismatch"
BAD_AMOUNT = "bad_amount"
BAD_STATUS = "bad_status"
BAD_CURRENCY = "bad_currency"
BAD_TS = "bad_ts"

SEP = b"|"
PAID = b"paid"
REFUNDED = b"refunded"
COL_MERCHANT = b"o:merchant"
COL_CUSTOMER = b"o:customer"
COL_PRODUCT = b"o:product"
COL_AMOUNT = b"o:amount_cents"
COL_CURRENCY = b"o:currency"
COL_STATUS = b"o:status"
COL_TS = b"o:ts"
COLUMNS = (COL_MERCHANT, COL_CUSTOMER, COL_PRODUCT, COL_AMOUNT, COL_CURRENCY, COL_STATUS, COL_TS)


def missing_reason(column: bytes) -> str:
    """``b"o:amount_cents"`` -> ``"missing_amount_cents"``."""
    return "missing_" + column.partition(b":")[2].decode()


@dataclass(slots=True)
class MerchantPartial:
    """One merchant's fold of some rows of a day.

    Only exact, mergeable facts are kept; every summary field is derived from
    them in :meth:`MerchantDaily.finalize`. Order counts and sums live in the
    amount counters (``amount -> count``) so that one dict update per row
    carries orders, revenue, min/max/mean and quantiles at once. Ids stay the
    raw bytes of the row (no decoding on the hot path).
    """

    paid: dict[int, int] = field(default_factory=dict)
    refunded: dict[int, int] = field(default_factory=dict)
    customers: set[bytes] = field(default_factory=set)
    products: dict[bytes, int] = field(default_factory=dict)
    """Paid revenue per product; a product appears once it has a paid order."""
    currencies: set[bytes] = field(default_factory=set)
    malformed: dict[str, int] = field(default_factory=dict)
    """Malformed rows by reason; their total is the ``malformed`` count."""
    customers_counted: int = 0
    """Distinct customers known only by their count: a compacted shard's (the
    customers of different shards are disjoint, so counts add)."""


_Slot = tuple[dict[int, int], dict[int, int], set[bytes], dict[bytes, int], set[bytes]]


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _utf8(raw: bytes) -> bool:
    return raw.isascii() or _text(raw) is not None


def _id(raw: bytes) -> str:
    """Bytes -> str for JSON, reversible for any bytes (undecodable ones become ``\\udcXX``)."""
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _joined(ids: list[bytes]) -> str | list[str]:
    """Sorted ids as one ``ID_SEP``-joined string, or (an id holding the separator,
    or an empty id) as a list of strings."""
    blob = ID_SEP.join(ids)
    if (ids and not ids[0]) or blob.count(ID_SEP) != max(len(ids) - 1, 0):
        return [_id(i) for i in ids]
    return _id(blob)


def _split_ids(value: object) -> list[bytes]:
    """Inverse of :func:`_joined`."""
    if isinstance(value, str):
        return _raw(value).split(ID_SEP) if value else []
    if isinstance(value, list):
        return [_raw(i) for i in value]
    raise TypeError(f"ids are {type(value).__name__}, not str or list")


def _is_int(raw: bytes) -> bool:
    return raw.isdigit() or (raw[:1] == b"-" and raw[1:].isdigit())


def diagnose(key: bytes, cols: Mapping[bytes, bytes]) -> tuple[str, str | None]:
    """The group of a row and why it is malformed (``None`` when it is valid).

    The slow, readable definition of a valid row; ``map_rows`` inlines the same
    checks for speed and defers to this function whenever one of them fails.
    """
    parts = key.split(SEP)
    key_merchant = parts[2] if len(parts) == 4 and all(parts) else b""
    name = _text(key_merchant) if key_merchant else None
    if name is None:
        column = cols.get(COL_MERCHANT, b"")
        return (column and _text(column)) or INVALID_GROUP, BAD_KEY
    if not _utf8(key):  # the merchant part is fine, so the merchant can be told
        return name, BAD_KEY
    for column in COLUMNS:
        if not cols.get(column):
            return name, missing_reason(column)
    amount, status, currency = cols[COL_AMOUNT], cols[COL_STATUS], cols[COL_CURRENCY]
    if cols[COL_MERCHANT] != key_merchant:
        return name, MERCHANT_MISMATCH
    if not (amount.isdigit() and len(amount) <= MAX_AMOUNT_DIGITS):
        return name, BAD_AMOUNT
    if status not in (PAID, REFUNDED):
        return name, BAD_STATUS
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        return name, BAD_CURRENCY
    if not _is_int(cols[COL_TS]):
        return name, BAD_TS
    return name, None


def _add_counts(into: dict[Any, int], other: Mapping[Any, int]) -> None:
    get = into.get
    for k, v in other.items():
        into[k] = get(k, 0) + v


def _quantile(items: list[tuple[int, int]], total: int, num: int, den: int) -> int:
    """Nearest rank: the smallest amount whose cumulative count reaches ceil(total*num/den)."""
    rank = max(1, -(-total * num // den))
    seen = 0
    for amount, count in items:
        seen += count
        if seen >= rank:
            return amount
    raise ValueError("rank beyond the counted amounts")  # unreachable for total = sum(counts)


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("ascii")


class MerchantDaily(Job[MerchantPartial]):
    """Per-merchant daily order analytics (see the module docstring for the fields)."""

    name = "merchant_daily"

    def map_rows(
        self, rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]], out: MapOutput[MerchantPartial]
    ) -> None:
        """Fold rows into ``out``.

        The hot path: locals only, one split per key, no regex, and the
        per-merchant containers cached by the key's raw merchant bytes so a
        valid row costs a few dict/set updates and no allocation but its int.
        Any failed check hands the row to :func:`diagnose`.
        """
        partials = out.partials
        slots: dict[bytes, _Slot] = {}
        read = bad = 0
        for key, cols in rows:
            read += 1
            try:
                salt, day, merchant, order = key.split(SEP)
                amount_raw = cols[COL_AMOUNT]
                status = cols[COL_STATUS]
                currency = cols[COL_CURRENCY]
                ts = cols[COL_TS]
                customer = cols[COL_CUSTOMER]
                product = cols[COL_PRODUCT]
                column_merchant = cols[COL_MERCHANT]
            except (ValueError, KeyError):
                bad += 1
                self._malformed(key, cols, out)
                continue
            if not (
                salt
                and day
                and merchant
                and order
                and customer
                and product
                and column_merchant == merchant
                and amount_raw.isdigit()
                and len(amount_raw) <= MAX_AMOUNT_DIGITS
                and status in (PAID, REFUNDED)
                and len(currency) == 3
                and currency.isalpha()
                and currency.isupper()
                and (ts.isdigit() or (ts[:1] == b"-" and ts[1:].isdigit()))
                and (key.isascii() or _text(key) is not None)
            ):
                bad += 1
                self._malformed(key, cols, out)
                continue
            slot = slots.get(merchant)
            if slot is None:
                name = _text(merchant)
                if name is None:
                    bad += 1
                    self._malformed(key, cols, out)
                    continue
                p = partials.get(name)
                if p is None:
                    p = partials[name] = MerchantPartial()
                slot = slots[merchant] = (p.paid, p.refunded, p.customers, p.products, p.currencies)
            paid, refunded, customers, products, currencies = slot
            amount = int(amount_raw)
            if status == PAID:
                paid[amount] = paid.get(amount, 0) + 1
                products[product] = products.get(product, 0) + amount
            else:
                refunded[amount] = refunded.get(amount, 0) + 1
            customers.add(customer)
            currencies.add(currency)
        out.rows_read += read
        out.rows_malformed += bad

    @staticmethod
    def _malformed(
        key: bytes, cols: Mapping[bytes, bytes], out: MapOutput[MerchantPartial]
    ) -> None:
        group, reason = diagnose(key, cols)
        if reason is None:  # the inlined checks and diagnose() disagree: a bug, not data
            raise AssertionError(f"row {key!r} failed the fast checks but diagnoses as valid")
        out.rejects.append((key, reason))
        partials = out.partials
        p = partials.get(group)
        if p is None:
            p = partials[group] = MerchantPartial()
        p.malformed[reason] = p.malformed.get(reason, 0) + 1

    sharded = True
    """Customers and per-product revenue are split by a hash of the id, so no
    reduce item holds a whole merchant (module docstring, "Sharding")."""
    groups_from_keys = True

    def group_of_key(self, key: bytes) -> str | None:
        """The key's merchant part (only big merchants are sharded: the planner counts
        them in its sampled keys); None for a key that is not ``SS|day|merchant|order``."""
        parts = key.split(SEP)
        if len(parts) != 4 or not all(parts):
            return None
        return _text(parts[2])

    def split(
        self, group: str, partial: MerchantPartial, shards: int
    ) -> dict[int, MerchantPartial]:
        """Customers and products by ``shard_of(id)``; the order counters, currencies
        and malformed counts in shard 0. Shares the partial's containers (a map
        chunk's partial is not used again)."""
        p = partial
        head = MerchantPartial(
            p.paid, p.refunded, set(), {}, p.currencies, p.malformed, p.customers_counted
        )
        parts = {0: head}
        for customer in p.customers:
            shard = crc32(customer) % shards  # shards.shard_of, inlined (hot path)
            part = parts.get(shard)
            if part is None:
                part = parts[shard] = MerchantPartial()
            part.customers.add(customer)
        for product, revenue in p.products.items():
            shard = crc32(product) % shards
            part = parts.get(shard)
            if part is None:
                part = parts[shard] = MerchantPartial()
            part.products[product] = revenue
        return parts

    def compact(self, group: str, partial: MerchantPartial) -> MerchantPartial:
        """A merged shard as ``finalize`` needs it: its customers as a count, its
        products cut to its top ten (a product lives in one shard, so the
        merchant's top ten are among the shards' tops)."""
        p = partial
        top = heapq.nsmallest(TOP_PRODUCTS, p.products.items(), key=lambda kv: (-kv[1], kv[0]))
        return MerchantPartial(
            p.paid,
            p.refunded,
            set(),
            dict(top),
            p.currencies,
            p.malformed,
            len(p.customers) + p.customers_counted,
        )

    def merge(self, a: MerchantPartial, b: MerchantPartial) -> MerchantPartial:
        """A new partial holding both; neither input is changed."""
        if len(a.customers) < len(b.customers):
            a, b = b, a  # copy the bigger one, fold in the smaller
        return self.merge_into(
            MerchantPartial(
                dict(a.paid),
                dict(a.refunded),
                set(a.customers),
                dict(a.products),
                set(a.currencies),
                dict(a.malformed),
                a.customers_counted,
            ),
            b,
        )

    def merge_into(self, acc: MerchantPartial, other: MerchantPartial) -> MerchantPartial:
        """Fold ``other`` into ``acc`` in place and return it (for a reducer that owns ``acc``)."""
        _add_counts(acc.paid, other.paid)
        _add_counts(acc.refunded, other.refunded)
        _add_counts(acc.products, other.products)
        _add_counts(acc.malformed, other.malformed)
        acc.customers |= other.customers
        acc.currencies |= other.currencies
        acc.customers_counted += other.customers_counted
        return acc

    def encode(self, partial: MerchantPartial) -> bytes:
        """Compact sorted JSON; sets and counters as sorted lists, ids reversible for any bytes.

        The customers and the products' ids travel as one newline-joined string
        each (``_joined``): a reduce decodes millions of them, and one split is
        far cheaper than a JSON string per id. ``counted`` (a compacted shard's
        customer count) appears only when non-zero.
        """
        products = sorted(partial.products.items())
        doc = {
            "v": FORMAT_VERSION,
            "paid": sorted(partial.paid.items()),
            "refunded": sorted(partial.refunded.items()),
            "customers": _joined(sorted(partial.customers)),
            "products": [_joined([k for k, _ in products]), [v for _, v in products]],
            "currencies": [_id(c) for c in sorted(partial.currencies)],
            "malformed": partial.malformed,
        }
        if partial.customers_counted:
            doc["counted"] = partial.customers_counted
        return _json(doc)

    def decode(self, data: bytes) -> MerchantPartial:
        """Inverse of :meth:`encode` (and of v1's); raises ``ValueError`` on bytes it did
        not write."""
        try:
            doc = json.loads(data)
            version = doc["v"]
            if version not in (1, FORMAT_VERSION):
                raise ValueError(f"partial format v{version}, expected v{FORMAT_VERSION}")
            if version == 1:
                customers = {_raw(c) for c in doc["customers"]}
                products = {_raw(k): int(v) for k, v in doc["products"]}
            else:
                customers = set(_split_ids(doc["customers"]))
                ids, revenues = doc["products"]
                products = dict(zip(_split_ids(ids), revenues, strict=True))
            return MerchantPartial(
                {int(a): int(c) for a, c in doc["paid"]},
                {int(a): int(c) for a, c in doc["refunded"]},
                customers,
                products,
                {_raw(c) for c in doc["currencies"]},
                {str(k): int(v) for k, v in doc["malformed"].items()},
                int(doc.get("counted", 0)),
            )
        except (KeyError, TypeError, AttributeError, UnicodeError) as exc:
            raise ValueError(f"not a merchant_daily partial: {exc!r}") from exc

    def finalize(self, group: str, partial: MerchantPartial) -> dict[bytes, bytes]:
        """Summary cells of one merchant's day; order-value stats only when it had orders."""
        paid, refunded = partial.paid, partial.refunded
        paid_orders = sum(paid.values())
        refunds = sum(refunded.values())
        revenue = sum(a * c for a, c in paid.items())
        refunded_cents = sum(a * c for a, c in refunded.items())
        top = heapq.nsmallest(
            TOP_PRODUCTS, partial.products.items(), key=lambda kv: (-kv[1], kv[0])
        )
        fields: dict[str, bytes] = {
            "orders": b"%d" % (paid_orders + refunds),
            "paid_orders": b"%d" % paid_orders,
            "revenue_cents": b"%d" % revenue,
            "refunds": b"%d" % refunds,
            "refunded_cents": b"%d" % refunded_cents,
            "distinct_customers": b"%d" % (len(partial.customers) + partial.customers_counted),
            "currencies": _json([_id(c) for c in sorted(partial.currencies)]),
            "top_products": _json([[_id(k), v] for k, v in top]),
            "malformed": b"%d" % sum(partial.malformed.values()),
            "malformed_reasons": _json(partial.malformed),
        }
        orders = paid_orders + refunds
        if orders:
            counts = dict(paid)
            _add_counts(counts, refunded)
            items = sorted(counts.items())
            total = revenue + refunded_cents
            fields["min_order_cents"] = b"%d" % items[0][0]
            fields["max_order_cents"] = b"%d" % items[-1][0]
            fields["mean_order_cents"] = b"%d" % ((2 * total + orders) // (2 * orders))
            fields["p50_order_cents"] = b"%d" % _quantile(items, orders, 50, 100)
            fields["p95_order_cents"] = b"%d" % _quantile(items, orders, 95, 100)
        return {b"s:" + k.encode(): v for k, v in sorted(fields.items())}
