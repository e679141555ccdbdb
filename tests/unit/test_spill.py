"""A reduce item that spills its big groups to disk gives the same bytes (worker/spill.py)."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

from hypothesis import event, given, settings
from hypothesis import strategies as st

from nightfold.common.jobs import shards
from nightfold.common.jobs.base import MapOutput
from nightfold.jobs.merchant_daily import MerchantPartial
from nightfold.worker.spill import GroupMerge
from tests.unit.test_merchant_daily import Case, reference
from tests.unit.test_shards import HOT, job, skewed_days


def _stored(
    rows: list[Case], buckets: int, hot: frozenset[str] | None, data: st.DataObject
) -> dict[int, list[tuple[str, bytes]]]:
    """The day shuffled, cut into chunks, mapped: each reduce bucket's partials in order."""
    pairs = data.draw(st.permutations([(c.key, c.cols) for c in rows]))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(pairs)), max_size=8)))
    stored: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
    for a, b in pairwise([0, *cuts, len(pairs)]):
        out: MapOutput[MerchantPartial] = MapOutput()
        job.map_rows(pairs[a:b], out)
        for name, bucket, part in shards.bucketed(job, out.partials, buckets, hot):
            stored[bucket].append((name, job.encode(part)))
    return stored


def _reduce(partials: list[tuple[str, bytes]], spill_bytes: int, spill_shards: int) -> GroupMerge:
    groups = GroupMerge(job, spill_bytes=spill_bytes, spill_shards=spill_shards)
    for name, data in partials:
        groups.add(name, data)
    event(f"spilled: {bool(groups.spilled)}")
    return groups


spills = st.tuples(st.integers(1, 3000), st.integers(1, 20))


@settings(max_examples=150, deadline=None)
@given(rows=skewed_days, buckets=st.integers(1, 9), spill=spills, data=st.data())
def test_spilled_groups_finalize_to_the_reference_without_a_combine(
    rows: list[Case], buckets: int, spill: tuple[int, int], data: st.DataObject
) -> None:
    # Given a skewed day planned with no hot group (the planner missed the hot one)
    stored = _stored(rows, buckets, frozenset(), data)
    summaries = {}
    # When each reduce item spills the groups whose partials pass a few bytes
    for bucket in sorted(stored):
        merged, compacted = _reduce(stored[bucket], *spill).finish()
        assert not merged.keys() & compacted.keys()
        whole = {**shards.whole_groups(merged), **shards.whole_groups(compacted)}
        summaries.update({g: job.finalize(g, p) for g, p in whole.items()})
    # Then its summaries are the reference bytes
    assert dict(sorted(summaries.items())) == reference(rows)


@settings(max_examples=150, deadline=None)
@given(rows=skewed_days, buckets=st.integers(1, 9), spill=spills, data=st.data())
def test_spilled_sub_groups_combine_to_the_reference(
    rows: list[Case], buckets: int, spill: tuple[int, int], data: st.DataObject
) -> None:
    # Given a skewed day with any hot groups sharded by the plan (None: all of them)
    groups = sorted({c.group for c in rows})
    hot = data.draw(
        st.one_of(st.none(), st.frozensets(st.sampled_from(groups)) if groups else st.none())
    )
    stored = _stored(rows, buckets, hot, data)
    # When the reduce items spill what passes a few bytes, compact the rest, and the
    # combine merges every group's compacted sub-groups
    for_combine: list[tuple[str, bytes]] = []
    for bucket in sorted(stored):
        merged, compacted = _reduce(stored[bucket], *spill).finish()
        for name, _group, part in shards.compacted(job, merged):
            for_combine.append((name, job.encode(part)))
        for_combine += [(n, job.encode(p)) for n, p in compacted.items()]
    combined = shards.combine(job, ((n, job.decode(b)) for n, b in sorted(for_combine)))
    # Then the summaries are the reference bytes
    assert {g: job.finalize(g, p) for g, p in sorted(combined.items())} == reference(rows)


def test_only_the_big_group_spills_and_its_files_are_closed() -> None:
    big = job.encode(_partial(HOT.decode(), 2000))
    small = job.encode(_partial("m000001", 3))
    groups = GroupMerge(job, spill_bytes=len(big) * 2, spill_shards=5)
    for _ in range(3):
        groups.add(shards.whole_group(HOT.decode()), big)
        groups.add(shards.whole_group("m000001"), small)
    assert groups.spilled == [shards.whole_group(HOT.decode())]
    files = [f for fs in groups._spilled.values() for f in fs.values()]
    merged, compacted = groups.finish()
    assert list(merged) == [shards.whole_group("m000001")]
    assert compacted[shards.whole_group(HOT.decode())].customers_counted == 2000
    assert all(f.closed for f in files)


def test_a_job_that_is_not_sharded_never_spills() -> None:
    from bench.hotjobs import UnshardedDaily

    plain = UnshardedDaily()
    groups = GroupMerge(plain, spill_bytes=1, spill_shards=4)
    groups.add("m000001", plain.encode(_partial("m000001", 50)))
    assert groups.spilled == []


def _partial(merchant: str, customers: int) -> MerchantPartial:
    p = MerchantPartial()
    p.paid[100] = customers
    p.customers.update(b"%s-c%07d" % (merchant.encode(), i) for i in range(customers))
    p.products.update({b"p%05d" % i: 100 for i in range(min(customers, 50))})
    return p
