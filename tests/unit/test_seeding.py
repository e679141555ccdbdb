"""The seeder: byte-for-byte deterministic, realistically skewed, a little broken on purpose."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from nightfold.common.errors import ConfigError
from nightfold.common.keys import KeyRange, day_ranges
from nightfold.common.store.local import LocalStore
from nightfold.ops.seeding import MALFORMED_KINDS, generate_rows, region_splits, seed_day

DAY = dt.date(2026, 11, 22)
MIDNIGHT = int(dt.datetime(2026, 11, 22, tzinfo=dt.UTC).timestamp())
KEY = re.compile(rb"(\d\d)\|20261122\|(m\d{6})\|(o\d{10})")
COLUMNS = {b"o:merchant", b"o:customer", b"o:product", b"o:amount_cents"}
COLUMNS |= {b"o:currency", b"o:status", b"o:ts"}
PINNED_DIGEST = "c1f1715a46e2e809c628a08ed98224155fe50ecb1d04da9260fb27a1718dfbc1"


def digest(rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]]) -> str:
    h = hashlib.sha256()
    for key, cells in rows:
        h.update(key + b"\0")
        for column in sorted(cells):
            h.update(column + b"=" + cells[column] + b"\0")
    return h.hexdigest()


def problems(key: bytes, cells: Mapping[bytes, bytes]) -> list[str]:
    """Why a row is malformed (empty for a good row), judged from the bytes alone."""
    found = []
    match = KEY.fullmatch(key)
    if match is None:
        found.append("bad_key")
    if set(cells) != COLUMNS:
        found.append("missing_column")
    if not cells.get(b"o:amount_cents", b"1").isdigit():
        found.append("bad_amount")
    if cells.get(b"o:status", b"paid") not in (b"paid", b"refunded"):
        found.append("bad_status")
    if match is not None and cells.get(b"o:merchant", match.group(2)) != match.group(2):
        found.append("merchant_mismatch")
    return found


@pytest.fixture(scope="module")
def rows() -> list[tuple[bytes, Mapping[bytes, bytes]]]:
    return list(generate_rows(DAY, 20_000))


def test_same_arguments_same_bytes() -> None:
    first = list(generate_rows(DAY, 3000, seed=7, malformed_share=0.01))
    again = list(generate_rows(DAY, 3000, seed=7, malformed_share=0.01))
    assert first == again
    assert digest(first) == digest(again)


def test_output_is_pinned() -> None:
    # Seeded data must be identical on every machine and Python version, forever:
    # benchmarks and verification baselines depend on it. A deliberate change to
    # the generator updates this digest (and says so in the changelog).
    assert digest(generate_rows(DAY, 500)) == PINNED_DIGEST


def test_seed_and_day_change_the_data() -> None:
    base = digest(generate_rows(DAY, 500))
    assert digest(generate_rows(DAY, 500, seed=2)) != base
    assert digest(generate_rows(DAY + dt.timedelta(days=1), 500)) != base


def test_a_prefix_of_rows_is_stable() -> None:
    # Asking for more rows extends the day; it does not reshuffle the first ones.
    assert list(generate_rows(DAY, 200)) == list(generate_rows(DAY, 1000))[:200]


def test_keys_are_salted_unique_and_inside_the_day(
    rows: list[tuple[bytes, Mapping[bytes, bytes]]],
) -> None:
    day = day_ranges(DAY, 16)
    assert len({key for key, _ in rows}) == len(rows)
    for key, _ in rows:
        assert any(key in r for r in day)
        match = KEY.fullmatch(key)
        if match is None:
            continue  # a bad_key row, checked below
        salt, merchant, order = match.groups()
        assert int(salt) == zlib.crc32(order) % 16
        assert merchant.decode() == f"m{int(merchant[1:]):06d}"


def test_good_rows_are_well_formed(rows: list[tuple[bytes, Mapping[bytes, bytes]]]) -> None:
    currency_of: dict[bytes, bytes] = {}
    for key, cells in rows:
        if problems(key, cells):
            continue
        assert re.fullmatch(rb"c\d{8}", cells[b"o:customer"])
        assert re.fullmatch(rb"p\d{6}", cells[b"o:product"])
        assert int(cells[b"o:amount_cents"]) > 0
        assert cells[b"o:currency"] in (b"EUR", b"USD", b"GBP")
        assert MIDNIGHT <= int(cells[b"o:ts"]) < MIDNIGHT + 86_400
        # each merchant has one fixed currency
        assert (
            currency_of.setdefault(cells[b"o:merchant"], cells[b"o:currency"])
            == cells[b"o:currency"]
        )
    assert set(currency_of.values()) == {b"EUR", b"USD", b"GBP"}


def test_malformed_share_and_kinds(rows: list[tuple[bytes, Mapping[bytes, bytes]]]) -> None:
    # Given the default share of 0.5 %
    found = [problems(key, cells) for key, cells in rows]
    broken = [p for p in found if p]
    # Then exactly that many rows are broken, each in exactly one way, all ways used evenly
    assert len(broken) == 100
    assert all(len(p) == 1 for p in broken)
    assert Counter(p[0] for p in broken) == dict.fromkeys(MALFORMED_KINDS, 20)


@pytest.mark.parametrize("share", [0.0, 0.013, 1.0])
def test_malformed_share_is_exact(share: float) -> None:
    count = sum(
        1 for key, cells in generate_rows(DAY, 1000, malformed_share=share) if problems(key, cells)
    )
    assert count == int(1000 * share)


def test_status_mix(rows: list[tuple[bytes, Mapping[bytes, bytes]]]) -> None:
    statuses = Counter(cells.get(b"o:status") for _, cells in rows)
    refunded = statuses[b"refunded"] / len(rows)
    assert 0.04 < refunded < 0.06
    assert statuses[b"paid"] + statuses[b"refunded"] >= len(rows) - 100


def test_merchants_and_products_are_zipf_skewed(
    rows: list[tuple[bytes, Mapping[bytes, bytes]]],
) -> None:
    merchants = Counter(cells.get(b"o:merchant") for _, cells in rows)
    products = Counter(cells.get(b"o:product") for _, cells in rows)
    # Zipf(1.1) over 1000 merchants: the top one takes ~18 %, the top 1 % about half.
    top = [n for _, n in merchants.most_common()]
    assert 0.13 < top[0] / len(rows) < 0.23
    assert 0.40 < sum(top[:10]) / len(rows) < 0.60
    assert top[0] > 1.8 * top[1]  # 2 ** 1.1 = 2.14 in expectation
    assert top[1] > top[3] > top[20] > top[200]
    # Products: the head is heavy, and the tail long (many products seen only rarely).
    counts = [n for _, n in products.most_common()]
    assert counts[0] / len(rows) > 0.08
    assert sum(1 for n in counts if n <= 2) > 1000


def test_amounts_are_positive_and_spread(rows: list[tuple[bytes, Mapping[bytes, bytes]]]) -> None:
    amounts = sorted(
        int(cells[b"o:amount_cents"]) for key, cells in rows if not problems(key, cells)
    )
    median = amounts[len(amounts) // 2]
    assert amounts[0] > 0
    assert 100 < median < 100_000
    assert amounts[-1] > 20 * median  # a long right tail, as with real prices


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rows": -1},
        {"merchants": 0},
        {"products": 0},
        {"customers": 0},
        {"salt_buckets": 0},
        {"salt_buckets": 101},
        {"malformed_share": 1.5},
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, int | float]) -> None:
    args: dict[str, int | float] = {"rows": 10} | kwargs
    rows = int(args.pop("rows"))
    with pytest.raises(ConfigError):
        generate_rows(DAY, rows, **args)  # type: ignore[arg-type]


def test_seed_day_writes_the_generated_rows(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite")
    try:
        # When a day is seeded twice (idempotent) in small batches
        assert seed_day(store, DAY, 1500, salt_buckets=4, batch_size=200) == 1500
        assert seed_day(store, DAY, 1500, salt_buckets=4, batch_size=333) == 1500
        stored = list(store.scan("nightfold_raw", KeyRange(b"", b"")))
    finally:
        store.close()
    # Then the table holds exactly the generated rows, in key order
    assert stored == sorted(generate_rows(DAY, 1500, salt_buckets=4))


def test_hot_share_zero_keeps_plain_days_identical() -> None:
    """Skew options off: the same bytes as a day seeded without them (fixed targets stay)."""
    day = dt.date(2026, 3, 4)
    assert list(generate_rows(day, 3000)) == list(generate_rows(day, 3000, hot_share=0.0))


def test_hot_merchant_takes_its_share_with_its_own_customers_and_products() -> None:
    day = dt.date(2026, 3, 4)
    rows = list(
        generate_rows(
            day, 20000, hot_share=0.5, hot_customers=8000, hot_products=900, malformed_share=0
        )
    )
    by_merchant = Counter(cells[b"o:merchant"] for _, cells in rows)
    hot, hot_rows = by_merchant.most_common(1)[0]
    assert 0.45 < hot_rows / len(rows) < 0.6
    own = [c for _, c in rows if c[b"o:merchant"] == hot and c[b"o:product"].startswith(b"h")]
    assert len({c[b"o:product"] for c in own}) == 900
    assert len({c[b"o:customer"] for c in own}) == 8000
    assert list(generate_rows(day, 500, hot_share=0.5)) == list(
        generate_rows(day, 500, hot_share=0.5)
    )


@pytest.mark.parametrize("kw", [{"hot_share": 1.5}, {"hot_customers": 0}, {"hot_products": 10**8}])
def test_hot_options_out_of_range_are_config_errors(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        generate_rows(dt.date(2026, 3, 4), 10, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("regions", "salts"), [(1, 16), (4, 16), (16, 16), (32, 16), (64, 16), (7, 3)]
)
def test_region_splits_cut_salts_first_then_inside_the_day(regions: int, salts: int) -> None:
    day = dt.date(2026, 11, 20)
    splits = region_splits(day, regions, salt_buckets=salts)
    assert splits == sorted(set(splits)) and b"" not in splits
    assert len(splits) == regions - 1
    if regions >= salts:
        assert {b"%02d|" % s for s in range(1, salts)} <= set(splits)
        inside = [k for k in splits if len(k) > 3]
        assert all(k[3:11] == b"20261120" for k in inside)


def test_region_splits_share_the_day_about_evenly_on_a_seeded_store(tmp_path: Path) -> None:
    # Given a day seeded into 32 regions (16 salts, one cut inside each)
    day = dt.date(2026, 11, 20)
    store = LocalStore(tmp_path / "s.sqlite")
    seed_day(store, day, 20_000, salt_buckets=16, regions=32)
    starts = store.region_starts("nightfold_raw")
    assert len(starts) == 31
    # Then each salt's day is cut into two parts of roughly equal rows
    for r in day_ranges(day, 16):
        cut = next(k for k in starts if k in r)
        below = sum(1 for _ in store.scan("nightfold_raw", KeyRange(r.start, cut), keys_only=True))
        above = sum(1 for _ in store.scan("nightfold_raw", KeyRange(cut, r.end), keys_only=True))
        assert 0.5 <= below / above <= 2
    store.close()
