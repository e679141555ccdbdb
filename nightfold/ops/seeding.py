"""Deterministic, realistic raw order rows for one day (demo, benchmarks, tests).

Why it looks the way it does: real order data is skewed -- a few merchants and
products take most orders (Zipf, s = 1.1) -- and a little of it is broken. Both
matter to a batch system: skew makes chunks unequal and the reduce uneven, and
broken rows must be counted, not crash a worker. The output is a pure function
of the arguments (``random.Random`` seeded with a string, ``zlib.crc32`` for
salts and currencies, never Python's salted ``hash``), so two machines seeding
the same day write the same bytes and the verifier has a fixed target.

Row key ``SS|YYYYMMDD|m000123|o0000004567`` (salt = crc32(order id) % buckets),
cells in family ``o``: merchant, customer, product, amount_cents, currency,
status, ts. A ``malformed_share`` of rows, evenly spaced and cycling through
:data:`MALFORMED_KINDS`, is broken in one way each.

Skew on demand (``hot_share``): that share of the rows goes to one merchant,
the busiest one, as on a day where one big online shop dominates. Its orders
can come from ``hot_customers`` distinct customers and ``hot_products``
distinct products of its own (ids ``c``/``h``, handed out in turn so the
distinct counts are exact), which is what makes its group large in memory.
With ``hot_share = 0`` (the default) no extra random number is drawn, so the
plain days stay byte-identical to what earlier versions seeded.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from nightfold.common.errors import ConfigError
from nightfold.common.keys import SEP, day_token, raw_key, salt_token
from nightfold.common.store.base import Row, Store

FAMILY = "o"
ZIPF_S = 1.1
MALFORMED_KINDS = ("missing_column", "bad_amount", "bad_key", "merchant_mismatch", "bad_status")

_COLUMNS = tuple(
    f"{FAMILY}:{name}".encode()
    for name in ("merchant", "customer", "product", "amount_cents", "currency", "status", "ts")
)
(_MERCHANT, _CUSTOMER, _PRODUCT, _AMOUNT, _CURRENCY, _STATUS, _TS) = _COLUMNS
# Orders per hour of the day (UTC): quiet nights, a lunch bump, a busy evening.
_HOURLY: tuple[float, ...] = (1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5, 5.5, 5, 4.5, 4.5)
_HOURLY += (4.5, 5, 5.5, 6, 5.5, 4.5, 3, 2)
_QUANTITY = (0.72, 0.18, 0.07, 0.02, 0.01)  # 1, 2, 3, 4, 5 items
_BAD_AMOUNTS = (b"", b"12.50", b"abc", b"-", b"1e3x")
_BAD_STATUSES = (b"pending", b"PAID", b"chargeback", b"")


def _zipf_cumulative(n: int, s: float = ZIPF_S) -> list[float]:
    """Cumulative Zipf weights of ranks 1..n, for ``bisect`` sampling."""
    return list(itertools.accumulate(1.0 / (k**s) for k in range(1, n + 1)))


def _currency(merchant: str) -> bytes:
    """A merchant's one currency, stable forever: EUR 45 %, USD 40 %, GBP 15 %."""
    bucket = zlib.crc32(merchant.encode()) % 100
    return b"EUR" if bucket < 45 else b"USD" if bucket < 85 else b"GBP"


class _Catalog:
    """What does not change from day to day for one ``seed``: who is popular, what costs what."""

    def __init__(self, merchants: int, products: int, seed: int) -> None:
        rng = random.Random(f"nightfold-catalog:{seed}")
        # Rank -> id, shuffled so the busiest merchant is not always m000000.
        self.merchant_ids = [f"m{i:06d}" for i in range(merchants)]
        rng.shuffle(self.merchant_ids)
        self.product_ids = [f"p{i:06d}".encode() for i in range(products)]
        rng.shuffle(self.product_ids)
        self.merchant_cum = _zipf_cumulative(merchants)
        self.product_cum = _zipf_cumulative(products)
        # Per-product list price in cents, log-normal around ~11.00.
        self.prices = [
            min(500_000, max(99, round(math.exp(rng.gauss(7.0, 1.1))))) for _ in range(products)
        ]
        self.currencies = {m: _currency(m) for m in self.merchant_ids}


def _pick(rng: random.Random, cumulative: Sequence[float]) -> int:
    index = bisect.bisect(cumulative, rng.random() * cumulative[-1])
    return min(index, len(cumulative) - 1)


class Hot:
    """The one dominating merchant of a skewed day (see the module docstring)."""

    def __init__(self, share: float, customers: int | None, products: int | None) -> None:
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"hot share must be within 0..1, got {share}")
        if customers is not None and not 1 <= customers <= 10**8:
            raise ConfigError("hot customers must be 1..100000000")
        if products is not None and not 1 <= products <= 10**7:
            raise ConfigError("hot products must be 1..10000000")
        self.share = share
        self.customers = customers
        self.products = products
        self.count = 0

    def next_customer_product(self) -> tuple[bytes | None, bytes | None]:
        """The next hot order's own customer and product ids (None: draw as usual)."""
        n = self.count
        self.count += 1
        customer = None if self.customers is None else b"c%08d" % (n % self.customers)
        # 7919 is prime: consecutive orders spread over the products, every one used.
        product = None
        if self.products is not None:
            product = b"h%07d" % (
                n * 7919 % self.products if self.products % 7919 else n % self.products
            )
        return customer, product


def _hot_price(product: bytes) -> int:
    """A hot product's list price in cents, stable forever (99..20098)."""
    return 99 + zlib.crc32(product) % 20000


def _check(rows: int, merchants: int, products: int, customers: int, share: float) -> None:
    if rows < 0 or rows >= 10**10:
        raise ConfigError(f"rows must be 0..9999999999, got {rows}")
    if min(merchants, products, customers) < 1 or max(merchants, products) > 10**6:
        raise ConfigError("merchants and products must be 1..1000000, customers >= 1")
    if customers > 10**8:
        raise ConfigError("customers must be at most 100000000")
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"malformed_share must be within 0..1, got {share}")


def generate_rows(
    day: dt.date,
    rows: int,
    *,
    merchants: int = 1000,
    products: int = 5000,
    customers: int = 50000,
    salt_buckets: int = 16,
    seed: int = 1,
    malformed_share: float = 0.005,
    hot_share: float = 0.0,
    hot_customers: int | None = None,
    hot_products: int | None = None,
) -> Iterator[Row]:
    """Yield ``rows`` raw order rows of ``day``; same arguments, same rows, byte for byte.

    Rows come in order-id order (not key order). Exactly
    ``floor(rows * malformed_share)`` of them are malformed. ``hot_*`` skew
    the day towards one merchant (module docstring). Raises
    :class:`ConfigError` for arguments out of range.
    """
    _check(rows, merchants, products, customers, malformed_share)
    if not 1 <= salt_buckets <= 100:
        raise ConfigError(f"salt buckets must be 1..100, got {salt_buckets}")
    # Checked eagerly (this is not a generator function), so bad arguments fail
    # before seed_day creates anything.
    hot = Hot(hot_share, hot_customers, hot_products)
    catalog = _Catalog(merchants, products, seed)
    return _rows(day, rows, catalog, customers, salt_buckets, seed, malformed_share, hot)


def _rows(
    day: dt.date,
    rows: int,
    catalog: _Catalog,
    customers: int,
    salt_buckets: int,
    seed: int,
    malformed_share: float,
    hot: Hot,
) -> Iterator[Row]:
    rng = random.Random(f"nightfold-orders:{seed}:{day.isoformat()}")
    midnight = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())
    hour_cum = list(itertools.accumulate(_HOURLY))
    quantity_cum = list(itertools.accumulate(_QUANTITY))
    day_bytes = day_token(day)
    malformed = 0

    for i in range(rows):
        order_id = f"o{i:010d}"
        salt = zlib.crc32(order_id.encode()) % salt_buckets
        is_hot = hot.share > 0 and rng.random() < hot.share
        merchant = catalog.merchant_ids[0 if is_hot else _pick(rng, catalog.merchant_cum)]
        product = _pick(rng, catalog.product_cum)
        product_id = catalog.product_ids[product]
        quantity = _pick(rng, quantity_cum) + 1
        price = catalog.prices[product]
        own_customer, own_product = hot.next_customer_product() if is_hot else (None, None)
        if own_product is not None:
            product_id, price = own_product, _hot_price(own_product)
        amount = price * quantity
        if rng.random() < 0.1:  # a discount code: 5..20 % off
            amount = amount * (100 - rng.randint(5, 20)) // 100
        ts = midnight + _pick(rng, hour_cum) * 3600 + rng.randrange(3600)
        key = raw_key(salt, day, merchant, order_id)
        cells: dict[bytes, bytes] = {
            _MERCHANT: merchant.encode(),
            _CUSTOMER: b"c%08d" % rng.randrange(customers)
            if own_customer is None
            else own_customer,
            _PRODUCT: product_id,
            _AMOUNT: b"%d" % amount,
            _CURRENCY: catalog.currencies[merchant],
            _STATUS: b"paid" if rng.random() < 0.95 else b"refunded",
            _TS: b"%d" % ts,
        }
        if int((i + 1) * malformed_share) > int(i * malformed_share):
            kind = MALFORMED_KINDS[malformed % len(MALFORMED_KINDS)]
            malformed += 1
            key = _break(kind, rng, key, cells, salt, day_bytes, order_id, catalog)
        yield key, cells


def _break(
    kind: str,
    rng: random.Random,
    key: bytes,
    cells: dict[bytes, bytes],
    salt: int,
    day_bytes: bytes,
    order_id: str,
    catalog: _Catalog,
) -> bytes:
    """Damage one row in place the way ``kind`` says; returns its (possibly new) key."""
    if kind == "missing_column":
        del cells[rng.choice(_COLUMNS)]
    elif kind == "bad_amount":
        cells[_AMOUNT] = rng.choice(_BAD_AMOUNTS)
    elif kind == "bad_key":  # SS|YYYYMMDD|garbage-o...: still inside the day's range
        key = SEP.join((salt_token(salt), day_bytes, b"garbage-" + order_id.encode()))
    elif kind == "merchant_mismatch":
        ids = catalog.merchant_ids
        other = ids[(ids.index(cells[_MERCHANT].decode()) + 1) % len(ids)]
        cells[_MERCHANT] = (other if len(ids) > 1 else "m999999").encode()
    else:  # bad_status
        cells[_STATUS] = rng.choice(_BAD_STATUSES)
    return key


def region_splits(
    day: dt.date,
    regions: int,
    *,
    salt_buckets: int = 16,
    merchants: int = 1000,
    products: int = 5000,
    seed: int = 1,
    hot_share: float = 0.0,
) -> list[bytes]:
    """Split keys that cut a table into ``regions`` regions the way a cluster's
    table of this day ends up: first at salt buckets (``SS|``, how salted tables
    are pre-split), then, past one region a bucket, inside the day of each bucket
    at merchants, so each region holds about an equal share of the day's rows
    (what HBase's size-based splits converge to). Merchant shares come from the
    catalog (no row is generated); a merchant bigger than a share gives fewer
    distinct cuts. Sorted and distinct."""
    if regions < 1 or regions > 100_000:
        raise ConfigError(f"regions must be 1..100000, got {regions}")
    if regions == 1:
        return []
    if regions <= salt_buckets:
        step = salt_buckets / regions
        cuts = {salt_token(round(i * step)) + SEP for i in range(1, regions)}
        return sorted(c for c in cuts if c != salt_token(0) + SEP)
    catalog = _Catalog(merchants, products, seed)
    weight = {
        m: (1 - hot_share) * (hi - lo) / catalog.merchant_cum[-1]
        for m, lo, hi in zip(
            catalog.merchant_ids,
            [0.0, *catalog.merchant_cum[:-1]],
            catalog.merchant_cum,
            strict=True,
        )
    }
    weight[catalog.merchant_ids[0]] += hot_share
    by_key = sorted(weight)
    cumulative = list(itertools.accumulate(weight[m] for m in by_key))
    extra = regions - salt_buckets
    cuts = {salt_token(s) + SEP for s in range(1, salt_buckets)}
    for s in range(salt_buckets):
        inside = extra // salt_buckets + (1 if s < extra % salt_buckets else 0)
        for q in range(1, inside + 1):
            at = min(bisect.bisect_left(cumulative, q / (inside + 1)), len(by_key) - 1)
            cuts.add(SEP.join((salt_token(s), day_token(day), by_key[at].encode())))
    return sorted(cuts)


def seed_day(
    store: Store,
    day: dt.date,
    rows: int,
    *,
    table: str = "nightfold_raw",
    batch_size: int = 2000,
    regions: int = 1,
    **kw: Any,
) -> int:
    """Create ``table`` (family ``o``) if needed and write one day of rows; returns the count.

    A table this creates with ``regions > 1`` is pre-split (:func:`region_splits`,
    ``nightfold.ops.presplit``); an existing table keeps its regions. ``kw`` goes
    to :func:`generate_rows`. Idempotent: seeding again writes the same cells.
    """
    generated = generate_rows(day, rows, **kw)
    if regions > 1:
        from nightfold.ops.presplit import create_presplit

        names = ("salt_buckets", "merchants", "products", "seed", "hot_share")
        split_kw: dict[str, Any] = {k: kw[k] for k in names if k in kw}
        create_presplit(store, table, [FAMILY], region_splits(day, regions, **split_kw))
    store.ensure_table(table, [FAMILY])
    return store.put_many(table, generated, batch_size=batch_size)
