"""Sharded groups (issue 16): a hot merchant's customers and products split by id
hash over the reduce buckets, reduced per shard, compacted, combined per group --
and the summaries still equal the reference byte for byte, whatever the chunking,
the number of buckets, the merge order and grouping."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.common.errors import CorruptPartial
from nightfold.common.jobs import shards
from nightfold.common.jobs.base import MapOutput
from nightfold.jobs.merchant_daily import MerchantDaily, MerchantPartial
from tests.unit.test_merchant_daily import Case, cases, cols_for, key_for, reference

job = MerchantDaily()
HOT = b"m000009"


@st.composite
def hot_cases(draw: st.DrawFn) -> Case:
    """A valid order of the hot merchant: many distinct customers and products."""
    order = draw(st.integers(0, 10**9))
    customer = b"c%06d" % draw(st.integers(0, 400))
    product = b"h%05d" % draw(st.integers(0, 60))
    amount = draw(st.sampled_from([99, 100, 250, 1999, 5000]))
    paid = draw(st.booleans())
    cols = cols_for(
        HOT, customer, product, b"%d" % amount, b"EUR", b"paid" if paid else b"refunded"
    )
    key = key_for(HOT, order, draw(st.integers(0, 15)))
    return Case(key, cols, HOT.decode(), None, amount, paid, customer, product, b"EUR")


skewed_days = st.tuples(st.lists(hot_cases(), max_size=150), st.lists(cases(), max_size=40)).map(
    lambda parts: parts[0] + parts[1]
)


def _merge_randomly(parts: list[MerchantPartial], rng: random.Random) -> MerchantPartial:
    """Merge in a random order and grouping, half of the time in place (a reducer's way)."""
    pending = list(parts)
    while len(pending) > 1:
        a = pending.pop(rng.randrange(len(pending)))
        b = pending.pop(rng.randrange(len(pending)))
        pending.append(job.merge_into(a, b) if rng.random() < 0.5 else job.merge(a, b))
    return pending[0]


@settings(max_examples=150, deadline=None)
@given(rows=skewed_days, buckets=st.integers(1, 9), data=st.data())
def test_sharded_reduce_and_combine_give_the_reference_bytes(
    rows: list[Case], buckets: int, data: st.DataObject
) -> None:
    # Given a skewed day, shuffled and cut into chunks, and any set of hot groups
    # (None: every group is sharded)
    groups = sorted({c.group for c in rows})
    hot = data.draw(st.one_of(st.none(), st.sets(st.sampled_from(groups)) if groups else st.none()))
    pairs = [(c.key, c.cols) for c in rows]
    shuffled = data.draw(st.permutations(pairs))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(pairs)), max_size=6)))
    chunks = [shuffled[a:b] for a, b in pairwise([0, *cuts, len(pairs)])]
    rng = random.Random(data.draw(st.integers(0, 2**32)))

    # When each chunk is mapped and its groups' shards stored by reduce bucket
    stored: dict[int, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    for chunk in chunks:
        out: MapOutput[MerchantPartial] = MapOutput()
        job.map_rows(chunk, out)
        for name, bucket, part in shards.bucketed(job, out.partials, buckets, hot):
            group, shard = shards.parse_shard_group(name)
            assert (shard is None) == (hot is not None and group not in hot)
            assert bucket == (job.bucket(group, buckets) + (shard or 0)) % buckets
            stored[bucket][name].append(job.encode(part))

    # And every reduce item merges its sub-groups and compacts them for the combine
    for_combine: list[tuple[str, bytes]] = []
    for bucket in sorted(stored):
        for name, blobs in stored[bucket].items():
            merged = _merge_randomly([job.decode(b) for b in blobs], rng)
            group, shard = shards.parse_shard_group(name)
            # (no reduce item holds another shard's customers or products)
            if shard is not None:
                assert all(shards.shard_of(c, buckets) == shard for c in merged.customers)
                assert all(shards.shard_of(p, buckets) == shard for p in merged.products)
            for_combine.append((name, job.encode(job.compact(group, merged))))

    # And the combine merges each group's compacted shards, in any order
    rng.shuffle(for_combine)
    combined = shards.combine(job, ((n, job.decode(b)) for n, b in for_combine))

    # Then the summaries equal the reference (and so a plain one-pass recomputation)
    assert {g: job.finalize(g, p) for g, p in sorted(combined.items())} == reference(rows)


@settings(max_examples=100, deadline=None)
@given(rows=skewed_days, buckets=st.integers(1, 12))
def test_the_shard_law_holds_for_any_partial(rows: list[Case], buckets: int) -> None:
    # Given the whole day folded in one partial per group
    out: MapOutput[MerchantPartial] = MapOutput()
    job.map_rows([(c.key, c.cols) for c in rows], out)
    for group, partial in out.partials.items():
        whole = job.finalize(group, job.decode(job.encode(partial)))
        # Then split -> compact -> combine -> finalize gives the same bytes
        assert shards.finalize_sharded(job, group, partial, buckets) == whole


def test_a_compacted_shard_keeps_a_count_and_the_top_ten() -> None:
    p = MerchantPartial()
    p.customers.update({b"c1", b"c2", b"c3"})
    p.products.update({b"p%02d" % i: 100 + i for i in range(15)})
    p.products[b"p99"] = 114  # ties with p14: the smaller id first
    small = job.compact("m", p)
    assert small.customers == set() and small.customers_counted == 3
    assert list(small.products) == [b"p14", b"p99", *(b"p%02d" % i for i in range(13, 5, -1))]
    assert job.decode(job.encode(small)) == small


def test_a_map_partial_encodes_as_before_sharding() -> None:
    # The compacted count is written only when non-zero: map partials keep their bytes.
    p = MerchantPartial()
    p.customers.add(b"c1")
    assert b"counted" not in job.encode(p)


@pytest.mark.parametrize("group", ["m1", "", "a\x1fb", "x\x1f0001", "y\x1fw", "\u00e9\x00|"])
def test_sub_group_names_round_trip_whatever_the_group(group: str) -> None:
    for shard in (0, 7, 9999, 12345):
        assert shards.parse_shard_group(shards.shard_group(group, shard)) == (group, shard)
    assert shards.parse_shard_group(shards.whole_group(group)) == (group, None)


def test_hot_groups_are_the_big_ones_in_the_sampled_keys() -> None:
    keys = [key_for(b"m1", i) for i in range(40)] + [key_for(b"m2", 1), b"garbage"]
    # every key sampled 1 in 1000: m1 ~40,000 rows, m2 ~1,000
    weighted = [(k, 1000.0) for k in keys]
    assert shards.hot_groups(job, weighted, 20_000) == ["m1"]
    assert shards.hot_groups(job, weighted, 500) == ["m1", "m2"]
    assert shards.decode_hot(shards.encode_hot(["b", "a\x1f"])) == {"a\x1f", "b"}

    class Keyless(MerchantDaily):
        groups_from_keys = False

    assert shards.hot_groups(Keyless(), weighted, 1) is None


@pytest.mark.parametrize(
    "name", ["m1", "m1\x1f01", "m1\x1f00001", "m1\x1fabcd", "m1\x1f\uff11234", "m1\x1fW"]
)
def test_a_name_that_is_not_a_sub_group_is_corrupt(name: str) -> None:
    with pytest.raises(CorruptPartial):
        shards.parse_shard_group(name)


def test_an_unsharded_job_writes_whole_groups_in_their_bucket() -> None:
    class Plain(MerchantDaily):
        sharded = False

    plain: Any = Plain()
    out: MapOutput[MerchantPartial] = MapOutput()
    plain.map_rows([(key_for(b"m1", 1), cols_for(b"m1"))], out)
    assert [(n, b) for n, b, _ in shards.bucketed(plain, out.partials, 8)] == [
        ("m1", plain.bucket("m1", 8))
    ]


@settings(max_examples=100, deadline=None)
@given(rows=skewed_days, buckets=st.integers(1, 9), data=st.data())
def test_with_no_hot_group_the_reduce_items_finalize_the_reference_bytes(
    rows: list[Case], buckets: int, data: st.DataObject
) -> None:
    # Given a day cut into chunks, planned with no hot group (so no combine stage)
    assert not shards.has_combine(job, frozenset())
    pairs = data.draw(st.permutations([(c.key, c.cols) for c in rows]))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(pairs)), max_size=6)))
    stored: dict[int, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    for a, b in pairwise([0, *cuts, len(pairs)]):
        out: MapOutput[MerchantPartial] = MapOutput()
        job.map_rows(pairs[a:b], out)
        for name, bucket, part in shards.bucketed(job, out.partials, buckets, frozenset()):
            stored[bucket][name].append(job.encode(part))

    # When every reduce item merges its groups and finalizes them itself
    summaries = {}
    for bucket in sorted(stored):
        merged = {
            name: _merge_randomly([job.decode(b) for b in blobs], random.Random(bucket))
            for name, blobs in stored[bucket].items()
        }
        for group, partial in shards.whole_groups(merged).items():
            assert job.bucket(group, buckets) == bucket  # a group is whole in its own bucket
            summaries[group] = job.finalize(group, partial)

    # Then the summaries equal the reference
    assert dict(sorted(summaries.items())) == reference(rows)


def test_a_shard_where_no_combine_stage_is_planned_is_corrupt() -> None:
    with pytest.raises(CorruptPartial, match="without a combine stage"):
        shards.whole_groups({shards.shard_group("m1", 3): MerchantPartial()})


@pytest.mark.parametrize("hot", [None, [], ["m1"], ["a*", "*", "m\x1f2"]])
def test_the_recorded_hot_list_round_trips(hot: list[str] | None) -> None:
    text = shards.encode_plan_hot(hot)
    assert shards.decode_plan_hot(text) == (None if hot is None else frozenset(hot))
    # a combine stage exactly when some group is sharded
    assert shards.has_combine(job, shards.decode_plan_hot(text)) == (hot is None or bool(hot))


def test_a_recorded_hot_list_that_is_not_one_is_corrupt() -> None:
    with pytest.raises(CorruptPartial):
        shards.decode_plan_hot('{"m1": 1}')
