"""The built-in merchant_daily job: exact statistics, malformed rows, and chunking invariance."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from itertools import pairwise
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.common.jobs import get_job
from nightfold.common.jobs.base import MapOutput
from nightfold.jobs.merchant_daily import (
    COLUMNS,
    INVALID_GROUP,
    MerchantDaily,
    MerchantPartial,
    diagnose,
    missing_reason,
)

job = MerchantDaily()
FULLWIDTH_FIVE = "\uff15".encode()  # a digit to str.isdigit, not to bytes.isdigit
Cols = dict[bytes, bytes]


def cols_for(
    merchant: bytes = b"m000001",
    customer: bytes = b"c0000001",
    product: bytes = b"p00001",
    amount: bytes = b"1000",
    currency: bytes = b"EUR",
    status: bytes = b"paid",
    ts: bytes = b"1795000000",
) -> Cols:
    return {
        b"o:merchant": merchant,
        b"o:customer": customer,
        b"o:product": product,
        b"o:amount_cents": amount,
        b"o:currency": currency,
        b"o:status": status,
        b"o:ts": ts,
    }


def key_for(merchant: bytes = b"m000001", order: int = 1, salt: int = 3) -> bytes:
    return b"%02d|20261122|%s|o%010d" % (salt, merchant, order)


def row(order: int = 1, merchant: bytes = b"m000001", **fields: bytes) -> tuple[bytes, Cols]:
    return key_for(merchant, order), cols_for(merchant=merchant, **fields)


def fold(rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]]) -> MapOutput[MerchantPartial]:
    out: MapOutput[MerchantPartial] = MapOutput()
    job.map_rows(rows, out)
    return out


def summarize(partials: Mapping[str, MerchantPartial]) -> dict[str, dict[bytes, bytes]]:
    return {group: job.finalize(group, p) for group, p in sorted(partials.items())}


def single_pass(
    rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]],
) -> dict[str, dict[bytes, bytes]]:
    return summarize(fold(rows).partials)


# ---------------------------------------------------------------- unit tests


def test_the_registry_serves_the_builtin_job() -> None:
    # Given the registry / When asking for merchant_daily / Then it is this job
    assert isinstance(get_job("merchant_daily"), MerchantDaily)


def test_a_small_day_gives_exact_fields() -> None:
    # Given two merchants, paid and refunded orders, a repeat customer, two currencies
    rows = [
        row(1, amount=b"100", customer=b"c1", product=b"p2"),
        row(2, amount=b"200", customer=b"c1", product=b"p1"),
        row(3, amount=b"300", customer=b"c2", product=b"p1", status=b"refunded"),
        row(4, amount=b"401", customer=b"c3", product=b"p3", currency=b"USD"),
        row(5, merchant=b"m000002", amount=b"7"),
    ]

    # When the rows are folded and finalized in one pass
    out = fold(rows)
    summary = summarize(out.partials)

    # Then every field is exact and canonical
    assert out.rows_read == 5
    assert out.rows_malformed == 0
    assert summary["m000001"] == {
        b"s:orders": b"4",
        b"s:paid_orders": b"3",
        b"s:revenue_cents": b"701",
        b"s:refunds": b"1",
        b"s:refunded_cents": b"300",
        b"s:distinct_customers": b"3",
        b"s:min_order_cents": b"100",
        b"s:max_order_cents": b"401",
        b"s:mean_order_cents": b"250",  # 1001 / 4 = 250.25
        b"s:p50_order_cents": b"200",  # rank ceil(0.5 * 4) = 2
        b"s:p95_order_cents": b"401",  # rank ceil(0.95 * 4) = 4
        b"s:top_products": b'[["p3",401],["p1",200],["p2",100]]',
        b"s:currencies": b'["EUR","USD"]',
        b"s:malformed": b"0",
        b"s:malformed_reasons": b"{}",
    }
    assert summary["m000002"][b"s:orders"] == b"1"


@pytest.mark.parametrize(
    ("amounts", "mean"),
    [([1, 2], b"2"), ([1, 1, 2], b"1"), ([0], b"0"), ([3, 4, 4, 4], b"4"), ([1, 2, 2, 2], b"2")],
)
def test_mean_rounds_half_up_with_integers(amounts: list[int], mean: bytes) -> None:
    # Given orders with these amounts / When finalized
    summary = single_pass(row(i, amount=b"%d" % a) for i, a in enumerate(amounts))
    # Then the mean is rounded half up (1.5 -> 2, 1.33 -> 1, 3.75 -> 4)
    assert summary["m000001"][b"s:mean_order_cents"] == mean


@pytest.mark.parametrize(
    ("n", "p50", "p95"),
    [(1, 1, 1), (2, 1, 2), (17, 9, 17), (20, 10, 19), (100, 50, 95), (101, 51, 96)],
)
def test_quantiles_are_nearest_rank(n: int, p50: int, p95: int) -> None:
    # Given orders of 1..n cents, shuffled / When finalized
    amounts = [(i * 7919) % n + 1 for i in range(n)]
    summary = single_pass(row(i, amount=b"%d" % a) for i, a in enumerate(amounts))["m000001"]
    # Then p50/p95 are the smallest amounts whose rank reaches ceil(q * n)
    assert summary[b"s:p50_order_cents"] == b"%d" % p50
    assert summary[b"s:p95_order_cents"] == b"%d" % p95


def test_top_products_keep_ten_by_revenue_ties_by_id_and_skip_refund_only_products() -> None:
    # Given 12 products with equal paid revenue, one bigger one, and one only refunded
    rows = [row(i, product=b"p%02d" % (12 - i), amount=b"50") for i in range(12)]
    rows.append(row(100, product=b"p99", amount=b"500"))
    rows.append(row(101, product=b"p00", amount=b"9999", status=b"refunded"))

    # When finalized
    top = json.loads(single_pass(rows)["m000001"][b"s:top_products"])

    # Then the biggest comes first, ties go by product id, and at most ten are kept
    assert top == [["p99", 500]] + [[f"p{i:02d}", 50] for i in range(1, 10)]


def test_non_utf8_ids_are_kept_reversibly() -> None:
    # Given a customer and product id that are not UTF-8
    rows = [row(1, customer=b"\xff\xfe", product=b"p\xe9")]

    # When the partial is encoded, decoded and finalized
    partial = fold(rows).partials["m000001"]
    data = job.encode(partial)

    # Then the bytes are ASCII, round-trip exactly, and the summary is ASCII JSON
    assert data.isascii()
    assert job.decode(data) == partial
    assert job.finalize("m000001", partial)[b"s:top_products"] == b'[["p\\udce9",1000]]'


VALID = cols_for()


@pytest.mark.parametrize(
    ("key", "cols", "group", "reason"),
    [
        (b"03|20261122|m000001", VALID, "m000001", "bad_key"),
        (key_for() + b"|x", VALID, "m000001", "bad_key"),
        (b"|20261122|m000001|o1", VALID, "m000001", "bad_key"),
        (b"03|20261122||o1", VALID, "m000001", "bad_key"),
        (b"garbage", {}, INVALID_GROUP, "bad_key"),
        (b"03|20261122|m\xff|o1", cols_for(merchant=b"m\xff"), INVALID_GROUP, "bad_key"),
        (b"03|20261122|m\xff|o1", VALID, "m000001", "bad_key"),
        (b"03|20261122|m000001|o\xff", VALID, "m000001", "bad_key"),
        (b"0\xff|20261122|m000001|o1", VALID, "m000001", "bad_key"),
        (b"03|2026\xe91122|m000001|o1", cols_for(merchant=b"m000002"), "m000001", "bad_key"),
        (key_for(), cols_for(merchant=b"m000002"), "m000001", "merchant_mismatch"),
        (key_for(), cols_for(amount=b"-5"), "m000001", "bad_amount"),
        (key_for(), cols_for(amount=b"1.5"), "m000001", "bad_amount"),
        (key_for(), cols_for(amount=b"+5"), "m000001", "bad_amount"),
        (key_for(), cols_for(amount=b" 5"), "m000001", "bad_amount"),
        (key_for(), cols_for(amount=FULLWIDTH_FIVE), "m000001", "bad_amount"),
        (key_for(), cols_for(amount=b"1" * 19), "m000001", "bad_amount"),
        (key_for(), cols_for(status=b"PAID"), "m000001", "bad_status"),
        (key_for(), cols_for(status=b"cancelled"), "m000001", "bad_status"),
        (key_for(), cols_for(currency=b"eur"), "m000001", "bad_currency"),
        (key_for(), cols_for(currency=b"EURO"), "m000001", "bad_currency"),
        (key_for(), cols_for(currency=b"E1R"), "m000001", "bad_currency"),
        (key_for(), cols_for(ts=b"1.5"), "m000001", "bad_ts"),
        (key_for(), cols_for(ts=b"-"), "m000001", "bad_ts"),
        (key_for(), cols_for(ts=b"1e9"), "m000001", "bad_ts"),
    ],
)
def test_malformed_rows_count_under_their_merchant_and_reason(
    key: bytes, cols: Cols, group: str, reason: str
) -> None:
    # Given one malformed row / When folded
    out = fold([(key, cols)])
    summary = summarize(out.partials)

    # Then it is counted, not dropped, under the merchant we can tell (else ~invalid)
    assert diagnose(key, cols) == (group, reason)
    assert (out.rows_read, out.rows_malformed) == (1, 1)
    assert summary[group][b"s:malformed"] == b"1"
    assert summary[group][b"s:malformed_reasons"] == b'{"%s":1}' % reason.encode()
    assert summary[group][b"s:orders"] == b"0"
    # And a group without valid orders has no order-value statistics
    assert b"s:p50_order_cents" not in summary[group]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_a_missing_or_empty_column_is_malformed(column: bytes, how: str) -> None:
    # Given a row without one column (or with it empty)
    cols = cols_for()
    if how == "absent":
        del cols[column]
    else:
        cols[column] = b""

    # When folded
    summary = single_pass([(key_for(), cols)])

    # Then it counts under the key's merchant with a reason naming the column
    assert (
        summary["m000001"][b"s:malformed_reasons"] == b'{"%s":1}' % missing_reason(column).encode()
    )


def test_edge_values_that_are_valid() -> None:
    # Given a zero amount, leading zeros, a negative ts and an 18-digit amount
    rows = [
        row(1, amount=b"0"),
        row(2, amount=b"007"),
        row(3, ts=b"-5"),
        row(4, amount=b"9" * 18),
    ]
    # When folded / Then none of them is malformed
    out = fold(rows)
    assert out.rows_malformed == 0
    assert job.finalize("m000001", out.partials["m000001"])[b"s:min_order_cents"] == b"0"


def test_merge_leaves_its_inputs_alone() -> None:
    # Given two partials and copies of their bytes
    a = fold([row(1, customer=b"c1")]).partials["m000001"]
    b = fold([row(2, customer=b"c2", amount=b"5")]).partials["m000001"]
    before = job.encode(a), job.encode(b)

    # When merged
    merged = job.merge(a, b)

    # Then the inputs are unchanged and the result has both
    assert (job.encode(a), job.encode(b)) == before
    assert job.finalize("m000001", merged)[b"s:distinct_customers"] == b"2"


@pytest.mark.parametrize(
    "data", [b"", b"[]", b"{}", b'{"v":99}', b"not json", b'{"v":1,"paid":[[1]]}']
)
def test_decode_rejects_bytes_it_did_not_write(data: bytes) -> None:
    # Given bytes that are not an encoded partial / When decoded / Then ValueError
    with pytest.raises(ValueError):
        job.decode(data)


# ---------------------------------------------------------------- properties

MERCHANTS = [b"m000001", b"m000002", b"m000003"]
CUSTOMERS = [b"c0000001", b"c0000002", b"c0000003", b"c0000004", b"c\xff"]
PRODUCTS = [b"p%05d" % i for i in range(13)] + [b"p\xe9"]
CURRENCIES = [b"EUR", b"USD", b"GBP"]
AMOUNTS = st.one_of(st.sampled_from([0, 1, 2, 99, 100, 1999]), st.integers(0, 10**6))
BAD_VALUES = {
    "bad_amount": [b"-5", b"1.5", b"+5", b"5a", b"1" * 19, FULLWIDTH_FIVE],
    "bad_status": [b"PAID", b"paid ", b"cancelled"],
    "bad_currency": [b"eur", b"EURO", b"EU", b"E1R", "ÄBC".encode()],
    "bad_ts": [b"1.5", b"abc", b"--5", b"-", b"1e9"],
}
BAD_COLUMN = {
    "bad_amount": b"o:amount_cents",
    "bad_status": b"o:status",
    "bad_currency": b"o:currency",
    "bad_ts": b"o:ts",
}


class Case(NamedTuple):
    """A generated row with what it must count as (built independently of the job)."""

    key: bytes
    cols: Cols
    group: str
    reason: str | None
    amount: int = 0
    paid: bool = False
    customer: bytes = b""
    product: bytes = b""
    currency: bytes = b""


@st.composite
def cases(draw: st.DrawFn, merchants: Sequence[bytes] = MERCHANTS) -> Case:
    order = draw(st.integers(0, 10**9))
    merchant = draw(st.sampled_from(merchants))
    amount = draw(AMOUNTS)
    paid = draw(st.booleans())
    customer = draw(st.sampled_from(CUSTOMERS))
    product = draw(st.sampled_from(PRODUCTS))
    currency = draw(st.sampled_from(CURRENCIES))
    amount_raw = draw(st.sampled_from([b"%d" % amount, b"0%d" % amount]))
    ts = draw(st.sampled_from([b"1795000000", b"-1", b"0"]))
    key = key_for(merchant, order, draw(st.integers(0, 99)))
    status = b"paid" if paid else b"refunded"
    cols = cols_for(merchant, customer, product, amount_raw, currency, status, ts)
    name = merchant.decode()
    kind = draw(
        st.sampled_from(["valid"] * 6 + ["key", "missing", "mismatch", *sorted(BAD_VALUES)])
    )
    if kind == "valid":
        return Case(key, cols, name, None, amount, paid, customer, product, currency)
    if kind == "key":
        key = draw(
            st.sampled_from(
                [
                    key.rpartition(b"|")[0],
                    key + b"|x",
                    b"|" + key.partition(b"|")[2],
                    key.replace(merchant, b""),
                    key.replace(merchant, b"m\xff"),
                    b"garbage",
                ]
            )
        )
        column = draw(st.sampled_from([merchant, b"", b"m\xfe", None]))
        if column is None:
            del cols[b"o:merchant"]
        else:
            cols[b"o:merchant"] = column
        return Case(key, cols, name if column == merchant else INVALID_GROUP, "bad_key")
    if kind == "missing":
        column = draw(st.sampled_from(COLUMNS))
        if draw(st.booleans()):
            del cols[column]
        else:
            cols[column] = b""
        return Case(key, cols, name, missing_reason(column))
    if kind == "mismatch":
        cols[b"o:merchant"] = draw(st.sampled_from([m for m in MERCHANTS if m != merchant]))
        return Case(key, cols, name, "merchant_mismatch")
    cols[BAD_COLUMN[kind]] = draw(st.sampled_from(BAD_VALUES[kind]))
    return Case(key, cols, name, kind)


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _id(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def nearest_rank(ordered: list[int], q: Fraction) -> int:
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def reference(cases: Iterable[Case]) -> dict[str, dict[bytes, bytes]]:
    """The summaries straight from the spec, with plain lists and Fractions."""
    by_group: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        by_group[case.group].append(case)
    result = {}
    for group, rows in sorted(by_group.items()):
        valid = [c for c in rows if c.reason is None]
        paid = [c for c in valid if c.paid]
        refunded = [c for c in valid if not c.paid]
        revenue: Counter[bytes] = Counter()
        for c in paid:
            revenue[c.product] += c.amount
        revenue_ids = {c.product for c in paid}
        top = sorted(((p, revenue[p]) for p in revenue_ids), key=lambda pr: (-pr[1], pr[0]))[:10]
        reasons = Counter(c.reason for c in rows if c.reason is not None)
        cells = {
            b"s:orders": b"%d" % len(valid),
            b"s:paid_orders": b"%d" % len(paid),
            b"s:revenue_cents": b"%d" % sum(c.amount for c in paid),
            b"s:refunds": b"%d" % len(refunded),
            b"s:refunded_cents": b"%d" % sum(c.amount for c in refunded),
            b"s:distinct_customers": b"%d" % len({c.customer for c in valid}),
            b"s:currencies": _json(sorted({c.currency.decode() for c in valid})),
            b"s:top_products": _json([[_id(p), r] for p, r in top]),
            b"s:malformed": b"%d" % sum(reasons.values()),
            b"s:malformed_reasons": _json(dict(reasons)),
        }
        if valid:
            ordered = sorted(c.amount for c in valid)
            mean = math.floor(Fraction(sum(ordered), len(ordered)) + Fraction(1, 2))
            cells[b"s:min_order_cents"] = b"%d" % ordered[0]
            cells[b"s:max_order_cents"] = b"%d" % ordered[-1]
            cells[b"s:mean_order_cents"] = b"%d" % mean
            cells[b"s:p50_order_cents"] = b"%d" % nearest_rank(ordered, Fraction(1, 2))
            cells[b"s:p95_order_cents"] = b"%d" % nearest_rank(ordered, Fraction(95, 100))
        result[group] = cells
    return result


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(cases(), max_size=60), data=st.data())
def test_any_chunking_order_and_merge_tree_gives_the_reference_bytes(
    rows: list[Case], data: st.DataObject
) -> None:
    # Given rows (valid and malformed of every kind), shuffled and cut into chunks
    pairs = [(c.key, c.cols) for c in rows]
    shuffled = data.draw(st.permutations(pairs))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(pairs)), max_size=6)))
    chunks = [shuffled[a:b] for a, b in pairwise([0, *cuts, len(pairs)])]

    # When each chunk is mapped on its own (in two scan batches) and stored as bytes
    stored: dict[str, list[bytes]] = defaultdict(list)
    for chunk in chunks:
        half = data.draw(st.integers(0, len(chunk)))
        out: MapOutput[MerchantPartial] = MapOutput()
        job.map_rows(chunk[:half], out)
        job.map_rows(iter(chunk[half:]), out)
        for group, partial in out.partials.items():
            stored[group].append(job.encode(partial))

    # And the partials are merged in a random order and grouping
    merged = {}
    for group, blobs in stored.items():
        pending = [job.decode(b) for b in blobs]
        while len(pending) > 1:
            a = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
            b = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
            pending.append(job.merge(a, b))
        merged[group] = pending[0]

    # Then the summaries equal a single pass and the reference, byte for byte
    expected = reference(rows)
    assert single_pass(pairs) == expected
    assert summarize(merged) == expected


@settings(max_examples=100, deadline=None)
@given(amounts=st.lists(AMOUNTS, min_size=1, max_size=80))
def test_quantiles_match_a_sorted_list(amounts: list[int]) -> None:
    # Given orders with these amounts / When finalized
    summary = single_pass(row(i, amount=b"%d" % a) for i, a in enumerate(amounts))["m000001"]
    # Then p50/p95 are the nearest-rank values of the sorted list
    ordered = sorted(amounts)
    assert summary[b"s:p50_order_cents"] == b"%d" % nearest_rank(ordered, Fraction(1, 2))
    assert summary[b"s:p95_order_cents"] == b"%d" % nearest_rank(ordered, Fraction(95, 100))


one_merchant_rows = st.lists(cases(merchants=[b"m000001"]), max_size=20).map(
    lambda cs: [(c.key, c.cols) for c in cs if c.group == "m000001"]
)


def partial_of(rows: list[tuple[bytes, Cols]]) -> MerchantPartial:
    return fold(rows).partials.get("m000001", MerchantPartial())


@settings(max_examples=100, deadline=None)
@given(rows=one_merchant_rows, data=st.data())
def test_encoding_is_canonical_and_round_trips(
    rows: list[tuple[bytes, Cols]], data: st.DataObject
) -> None:
    # Given the same rows folded in two different orders
    a = partial_of(rows)
    b = partial_of(data.draw(st.permutations(rows)))

    # When encoded / Then the bytes are equal, ASCII, and decode to an equal partial
    encoded = job.encode(a)
    assert encoded == job.encode(b)
    assert encoded.isascii()
    assert job.decode(encoded) == a
    assert job.encode(job.decode(encoded)) == encoded


@settings(max_examples=100, deadline=None)
@given(x=one_merchant_rows, y=one_merchant_rows, z=one_merchant_rows)
def test_merge_is_associative_and_commutative_on_bytes(
    x: list[tuple[bytes, Cols]], y: list[tuple[bytes, Cols]], z: list[tuple[bytes, Cols]]
) -> None:
    # Given three partials of one merchant
    a, b, c = partial_of(x), partial_of(y), partial_of(z)

    # When merged in different orders and groupings
    def enc(p: MerchantPartial) -> bytes:
        return job.encode(p)

    # Then the bytes agree, and equal folding all rows at once
    assert enc(job.merge(a, b)) == enc(job.merge(b, a))
    assert enc(job.merge(job.merge(a, b), c)) == enc(job.merge(a, job.merge(b, c)))
    assert enc(job.merge(job.merge(a, b), c)) == enc(partial_of(x + y + z))


@settings(max_examples=200, deadline=None)
@given(
    customers=st.sets(st.binary(max_size=6), max_size=8),
    products=st.dictionaries(st.binary(max_size=6), st.integers(0, 10**12), max_size=8),
)
def test_any_id_bytes_round_trip_joined_or_listed(
    customers: set[bytes], products: dict[bytes, int]
) -> None:
    # Given ids with any bytes: empty ones, newlines (the join separator), non-UTF-8
    partial = MerchantPartial(customers=customers, products=products)

    # When encoded and decoded / Then the partial is the same, and the bytes are canonical
    data = job.encode(partial)
    assert job.decode(data) == partial
    assert job.encode(job.decode(data)) == data


def test_a_v1_partial_still_decodes() -> None:
    # Given a partial in the v1 format (one JSON string per id), as a run planned
    # before v2 left it
    v1 = (
        b'{"currencies":["EUR"],"customers":["c1","c\\n2"],"malformed":{"bad_ts":1},'
        b'"paid":[[250,2]],"products":[["p1",500]],"refunded":[],"v":1}'
    )

    # When decoded / Then it is the same partial a v2 encoding round-trips
    partial = job.decode(v1)
    assert partial == MerchantPartial(
        paid={250: 2},
        customers={b"c1", b"c\n2"},
        products={b"p1": 500},
        currencies={b"EUR"},
        malformed={"bad_ts": 1},
    )
    assert job.decode(job.encode(partial)) == partial
