"""A map chunk in segments, on the embedded store with its records in memory
(``worker/checkpoint.py``): checkpoints every ``checkpoint_rows``; a taker resumes
after the last committed segment and re-reads at most one interval; a segment
written but never committed (a kill in between, a fenced-out late writer) does
not count; a split stops the owner at the cut and the tail maps the rest. Every
way, the summaries equal the one-process oracle's and no row counts twice."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nightfold.common.db.chunks import Claim
from nightfold.common.db.runs import RunInfo, RunParams
from nightfold.common.db.segments import SegmentSpec
from nightfold.common.jobs import get_job
from nightfold.common.keys import PARTIALS_TABLE, KeyRange
from nightfold.common.states import RunState, Stage
from nightfold.common.store.local import LocalStore
from nightfold.ops.seeding import seed_day
from nightfold.ops.verify import compute_expected, read_stored
from nightfold.worker.executor import run_map
from tests.support.segments import MemoryIO, NoLease, reduce_day

DAY = dt.date(2026, 11, 22)
BUCKETS = 3
SALT = 2
ROWS = 3000
JOB = get_job("merchant_daily")
ALL = KeyRange(b"00|", b"99|")


class Killed(Exception):
    """The worker died here (SIGKILL: nothing after it runs)."""


class DiesAt(NoLease):
    """A lease whose holder dies once it has read ``rows`` rows in this attempt."""

    def __init__(self, rows: int, split_at: int | None = None) -> None:
        self.rows = rows
        self.split_at = split_at
        self.seen = 0
        self.first: int | None = None

    def tick(self, rows_read: int, last_key: bytes | None, *, force: bool = False) -> None:
        if self.first is None:
            self.first = rows_read
        self.seen = rows_read - self.first
        if self.split_at is not None and rows_read >= self.split_at:
            self.split_requested, self.split_at = True, None
        if self.seen >= self.rows:
            raise Killed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "store.sqlite")
    for table, family in ((PARTIALS_TABLE, "p"), ("nightfold_summary", "s")):
        s.ensure_table(table, [family])
    seed_day(s, DAY, ROWS, merchants=12, salt_buckets=SALT, hot_share=0.3)
    yield s
    s.close()


def params(**kw: Any) -> RunParams:
    base = {
        "reduce_buckets": BUCKETS,
        "salt_buckets": SALT,
        "scan_batch": 50,
        "checkpoint_rows": 400,
        "split_min_rows": 100,
    }
    return RunParams(**{**base, **kw})


def claim(idx: int, key_range: KeyRange, attempt: int, p: RunParams, io: MemoryIO) -> Claim:
    """The claim a worker gets: its checkpoint is what ``io`` committed so far."""
    run = RunInfo(1, "merchant_daily", DAY, 1, RunState.MAPPING, "m", False, p, None)
    mine = sorted((seq, s) for (i, seq), (_, s) in io.segments.items() if i == idx)
    c = Claim(1, run, Stage.MAP, idx, key_range, f"w{attempt}", attempt)
    if mine:
        c = dataclasses.replace(
            c,
            resume_key=mine[-1][1].resume_key,
            next_seq=mine[-1][0] + 1,
            rows_committed=sum(s.rows_read for _, s in mine),
        )
    io.claim = c
    return c


def reduce_and_check(store: LocalStore, io: MemoryIO, p: RunParams) -> None:
    run = RunInfo(1, "merchant_daily", DAY, 1, RunState.REDUCING, "m", False, p, None)
    reduce_day(store, JOB, run, io, BUCKETS)
    assert read_stored(store, JOB, DAY) == compute_expected(store, JOB, DAY, SALT)


def test_checkpoints_commit_segments_every_interval(store: LocalStore) -> None:
    p, io = params(), MemoryIO()
    result = run_map(claim(0, ALL, 1, p, io), store, JOB, NoLease(), io)
    io.finish(result.last)
    # segments of checkpoint_rows (rounded up to a scan batch), the last one the rest
    sizes = [s.rows_read for _, (_, s) in sorted(io.segments.items())]
    assert sum(sizes) == ROWS and all(n == 400 for n in sizes[:-1]) and 0 < sizes[-1] <= 400
    reduce_and_check(store, io, p)


def test_a_taker_resumes_after_the_last_checkpoint(store: LocalStore) -> None:
    p, io = params(), MemoryIO()
    # Given a worker killed at about 90% of the chunk
    with pytest.raises(Killed):
        run_map(claim(0, ALL, 1, p, io), store, JOB, DiesAt(2700), io)
    committed = io.rows(0)
    assert 2400 <= committed < 2700
    # When another worker takes it over
    taker = claim(0, ALL, 2, p, io)
    result = run_map(taker, store, JOB, NoLease(), io)
    io.finish(result.last)
    # Then it read only the rows after the checkpoint: re-read at most one interval
    assert result.rows_read == ROWS - committed
    assert 2700 - committed <= p.checkpoint_rows
    # And the segments it wrote continue the numbering under its own attempt
    assert sorted(io.segments)[-1][1] > max(seq for (_, seq) in io.segments if seq < 6)
    assert {a for a, _ in io.segments.values()} == {1, 2}
    reduce_and_check(store, io, p)


class KilledBeforeCommit(MemoryIO):
    """Dies after writing a segment's partials, before its commit."""

    def commit(self, seg: SegmentSpec) -> None:
        if self.claim is not None and self.claim.attempt == 1 and seg.seq == 2:
            raise Killed
        super().commit(seg)


def test_partials_of_an_uncommitted_segment_do_not_count(store: LocalStore) -> None:
    p, io = params(), KilledBeforeCommit()
    with pytest.raises(Killed):
        run_map(claim(0, ALL, 1, p, io), store, JOB, NoLease(), io)
    assert io.rows(0) == 800  # segments 0 and 1; segment 2's partials are written
    written = {k for k, _ in store.scan(PARTIALS_TABLE, KeyRange(b"", b""))}
    assert any(b"|000000|000002|" in k for k in written)
    result = run_map(claim(0, ALL, 2, p, io), store, JOB, NoLease(), io)
    io.finish(result.last)
    reduce_and_check(store, io, p)


def test_a_late_writer_of_an_old_attempt_changes_nothing(store: LocalStore) -> None:
    # Given the chunk done by attempt 2, which split it (attempt 1 froze before
    # committing anything), and the tail done too
    p, io = params(), MemoryIO()
    io.finish(run_map(claim(0, ALL, 2, p, io), store, JOB, DiesAt(10**9, 300), io).last)
    ((_, end, cut),) = io.splits
    io.finish(run_map(claim(1001, KeyRange(cut, end), 1, p, io), store, JOB, NoLease(), io).last)
    # When attempt 1 wakes and writes partials for the whole unsplit chunk, under the
    # same segment numbers but other spans (it checkpointed elsewhere), never committed
    late = MemoryIO()
    run_map(claim(0, ALL, 1, params(checkpoint_rows=700), late), store, JOB, NoLease(), late)
    assert {seq for _, seq in late.segments} & {seq for i, seq in io.segments if i == 0}
    # Then nothing it wrote landed on a committed segment, and the reduce is exact
    reduce_and_check(store, io, p)


def test_a_split_stops_the_owner_at_the_cut_and_the_tail_maps_the_rest(
    store: LocalStore,
) -> None:
    p, io = params(checkpoint_rows=10_000), MemoryIO()
    owner = claim(0, ALL, 1, p, io)
    lease = DiesAt(10**9, split_at=200)
    result = run_map(owner, store, JOB, lease, io)
    io.finish(result.last)
    ((idx, end, cut),) = io.splits
    assert (idx, end) == (0, ALL.end) and result.splits == [1001]
    before_cut = sum(1 for _ in store.scan(JOB.raw_table, KeyRange(ALL.start, cut)))
    assert result.rows_read == before_cut and 200 < before_cut < ROWS
    # the tail, a new chunk any worker can claim, maps the rest
    tail = claim(1001, KeyRange(cut, end), 1, p, io)
    io.finish(run_map(tail, store, JOB, NoLease(), io).last)
    assert io.rows(0) + io.rows(1001) == ROWS
    reduce_and_check(store, io, p)


def test_too_little_left_declines_the_split(store: LocalStore) -> None:
    p, io = params(split_min_rows=5000), MemoryIO()
    lease = DiesAt(10**9, split_at=100)
    io.finish(run_map(claim(0, ALL, 1, p, io), store, JOB, lease, io).last)
    assert not io.splits and len(io.declined) == 1
    reduce_and_check(store, io, p)


def test_a_chunk_much_larger_than_planned_hands_the_rest_off(store: LocalStore) -> None:
    # Given chunks planned at 800 rows and one chunk holding the whole day (3000)
    p, io = params(chunk_rows=800, split_min_rows=100), MemoryIO()
    todo, done = [(0, ALL)], []
    while todo:
        idx, key_range = todo.pop()
        before = len(io.splits)
        result = run_map(claim(idx, key_range, 1, p, io), store, JOB, NoLease(), io)
        io.finish(result.last)
        done.append(result.rows_read)
        # each time past 1.5 x the plan, the rest becomes a new chunk
        for parent, end, cut in io.splits[before:]:
            assert parent == idx
            todo.append((1001 + io.splits.index((parent, end, cut)), KeyRange(cut, end)))
    assert sum(done) == ROWS and len(done) >= 3
    assert max(done) <= 2 * 800
    reduce_and_check(store, io, p)
