"""The oracle: identical summaries pass, any tampering is reported field by field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from nightfold.common.jobs import get_job
from nightfold.common.keys import summary_key
from nightfold.common.store.local import LocalStore
from nightfold.ops.seeding import seed_day
from nightfold.ops.verify import Difference, compute_expected, verify_day

DAY = dt.date(2026, 11, 22)


def _store_with_correct_summaries(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store.sqlite")
    seed_day(store, DAY, 3000, merchants=40, salt_buckets=4, seed=3)
    job = get_job("merchant_daily")
    store.ensure_table(job.summary_table, [job.summary_family])
    expected = compute_expected(store, job, DAY, 4)
    store.put_many(job.summary_table, [(summary_key(DAY, g), c) for g, c in expected.items()])
    return store


def test_identical_summaries_pass(tmp_path: Path) -> None:
    store = _store_with_correct_summaries(tmp_path)
    report = verify_day(store, get_job("merchant_daily"), DAY, 4)
    assert report.ok and report.rows_read == 3000 and report.groups_compared > 0


def test_tampering_is_reported(tmp_path: Path) -> None:
    store = _store_with_correct_summaries(tmp_path)
    job = get_job("merchant_daily")
    truth = compute_expected(store, job, DAY, 4)
    assert truth["m000001"][b"s:orders"] != b"999999" and "m999999" not in truth
    # Given one field changed and one extra group written
    store.put_many(job.summary_table, [(summary_key(DAY, "m000001"), {b"s:orders": b"999999"})])
    store.put_many(job.summary_table, [(summary_key(DAY, "m999999"), {b"s:orders": b"1"})])
    # When verifying
    report = verify_day(store, job, DAY, 4)
    # Then both are named, field by field, and nothing else is
    assert not report.ok
    assert report.differences == [
        Difference("m000001", b"s:orders", truth["m000001"][b"s:orders"], b"999999"),
        Difference("m999999", b"s:orders", None, b"1"),
    ]
    assert [d.kind for d in report.differences] == ["different", "extra"]


def test_stale_rows_and_cells_of_an_earlier_generation_are_reported(tmp_path: Path) -> None:
    # Given a stored day with a row and a cell the recomputation does not have
    store = _store_with_correct_summaries(tmp_path)
    job = get_job("merchant_daily")
    expected = compute_expected(store, job, DAY, 4)
    group = sorted(expected)[0]
    store.put_many(job.summary_table, [(summary_key(DAY, group), {b"s:stale": b"1"})])
    store.put_many(job.summary_table, [(summary_key(DAY, "m-gone"), {b"s:orders": b"3"})])
    # When verifying
    report = verify_day(store, job, DAY, 4)
    # Then both are reported as extra
    extra = {(d.group, d.field) for d in report.differences if d.kind == "extra"}
    assert extra == {(group, b"s:stale"), ("m-gone", b"s:orders")}
    assert len(report.differences) == 2
