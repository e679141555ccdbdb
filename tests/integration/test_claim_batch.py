"""Claims and completions of several chunks in one transaction (``claim_many``,
``complete_many``) and the worker's group commit over them: each chunk keeps
the guarantees of a lone claim -- only queued chunks of live runs (so
``max_in_flight`` still caps them), attempt + 1 and a lease, fencing by owner
and attempt, one event per transition -- on SQLite and on MariaDB."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, RootTransaction, func, select, update
from sqlalchemy.exc import OperationalError

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec, Completion
from nightfold.common.db.models import Chunk, QuarantinedRow, Run, RunEvent
from nightfold.common.db.runs import RunInfo, RunParams
from nightfold.common.errors import ChunkLost
from nightfold.common.keys import KeyRange
from nightfold.common.states import RunState, Stage
from nightfold.worker.batching import ChunkBatches, GroupCommit

DAY = dt.date(2026, 11, 22)


def _run(engine: Engine, n: int, window: int) -> tuple[RunInfo, list[int]]:
    """A mapping run of ``n`` map chunks, ``window`` of them queued; all chunk ids."""
    params = RunParams(max_in_flight=window, lease_seconds=30, max_attempts=3)
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", DAY, 1, params, "test")
        assert run is not None
        run_repo.move(conn, run.id, RunState.PLANNING, RunState.MAPPING, actor="test")
        specs = [
            ChunkSpec(Stage.MAP, i, KeyRange(b"k%03d" % i, b"k%03d" % (i + 1))) for i in range(n)
        ]
        chunk_repo.insert_plan(conn, run.id, specs)
        chunk_repo.open_window(conn, run.id, Stage.MAP, window, "test")
        ids = list(conn.execute(select(Chunk.id).order_by(Chunk.idx)).scalars())
        got = run_repo.get_run(conn, run.id)
    assert got is not None
    return got, ids


def _events(engine: Engine, kind: str) -> list[tuple[int, str, int]]:
    with engine.connect() as conn:
        return [
            (int(c), str(a), int(n))
            for c, a, n in conn.execute(
                select(RunEvent.chunk_id, RunEvent.actor, RunEvent.attempt)
                .where(RunEvent.kind == kind)
                .order_by(RunEvent.chunk_id)
            )
        ]


def test_claim_many_takes_only_queued_chunks_once(engine: Engine) -> None:
    # Given 5 chunks of which the window (max_in_flight 4) queued 4
    run, ids = _run(engine, 5, 4)
    # When a worker claims all five ids at once
    with engine.begin() as conn:
        claims = chunk_repo.claim_many(conn, ids, "w1")
    # Then it holds the 4 queued ones (the pending one stays out), attempt 1, its owner
    assert sorted(claims) == ids[:4]
    assert {(c.owner, c.attempt, c.run.id) for c in claims.values()} == {("w1", 1, run.id)}
    assert [claims[i].key_range.start for i in ids[:4]] == [b"k000", b"k001", b"k002", b"k003"]
    with engine.connect() as conn:
        rows = conn.execute(
            select(Chunk.id, Chunk.state, Chunk.owner, Chunk.attempt, Chunk.lease_expires_at).where(
                Chunk.id.in_(ids[:4])
            )
        ).all()
    assert {(r.state, r.owner, r.attempt) for r in rows} == {("claimed", "w1", 1)}
    assert all(r.lease_expires_at is not None for r in rows)
    assert _events(engine, "claimed") == [(i, "w1", 1) for i in ids[:4]]
    # And a second claim of the same ids (duplicate hints) gets nothing
    with engine.begin() as conn:
        assert chunk_repo.claim_many(conn, ids, "w2") == {}


def test_claim_many_refuses_a_cancelled_run(engine: Engine) -> None:
    run, ids = _run(engine, 3, 3)
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run.id).values(cancel_requested=True))
    with engine.begin() as conn:
        assert chunk_repo.claim_many(conn, ids, "w1") == {}
    assert _events(engine, "claimed") == []


def test_a_known_run_is_still_checked_live_by_the_claim(engine: Engine) -> None:
    """KnownRuns keeps the run as first read; the claim's UPDATE still refuses a run
    cancelled since (one chunk or several)."""
    run, ids = _run(engine, 4, 4)
    known = chunk_repo.KnownRuns()
    with engine.begin() as conn:
        assert set(chunk_repo.claim_many(conn, ids[:1], "w1", known)) == {ids[0]}
    assert run.id in known
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run.id).values(cancel_requested=True))
    for batch in (ids[1:2], ids[2:]):
        with engine.begin() as conn:
            assert chunk_repo.claim_many(conn, batch, "w1", known) == {}
    assert [c for c, _, _ in _events(engine, "claimed")] == [ids[0]]


def test_complete_many_is_fenced_per_chunk(engine: Engine) -> None:
    # Given three chunks claimed together by w1, one of which was taken over by w2
    run, ids = _run(engine, 3, 3)
    with engine.begin() as conn:
        claims = chunk_repo.claim_many(conn, ids, "w1")
    taken = ids[1]
    with engine.begin() as conn:
        conn.execute(
            update(Chunk).where(Chunk.id == taken).values(lease_expires_at=dt.datetime(2000, 1, 1))
        )
        assert chunk_repo.reclaim_expired(conn, run.id, 3, "master") == [taken]
        chunk_repo.open_window(conn, run.id, Stage.MAP, 3, "master")
        again = chunk_repo.claim(conn, taken, "w2")
    assert again is not None and again.attempt == 2
    # When w1 completes all three at once
    with engine.begin() as conn:
        lost = chunk_repo.complete_many(
            conn,
            [Completion(claims[i], 100 + n, n, [(b"bad%d" % n, "why")]) for n, i in enumerate(ids)],
        )
    # Then only the taken one is lost, the others are done with their own counts
    assert lost == {taken}
    with engine.connect() as conn:
        rows = {
            int(r.id): (r.state, r.rows_read, r.rows_malformed)
            for r in conn.execute(
                select(Chunk.id, Chunk.state, Chunk.rows_read, Chunk.rows_malformed)
            )
        }
        quarantined = sorted(conn.execute(select(QuarantinedRow.row_key)).scalars())
    assert rows[ids[0]] == ("done", 100, 0)
    assert rows[ids[2]] == ("done", 102, 2)
    assert rows[taken][0] == "claimed"
    assert quarantined == [b"bad0", b"bad2"]
    assert _events(engine, "done") == [(ids[0], "w1", 1), (ids[2], "w1", 1)]
    with engine.connect() as conn:  # the same detail as a lone completion's
        details = conn.execute(
            select(RunEvent.detail).where(RunEvent.kind == "done").order_by(RunEvent.chunk_id)
        ).scalars()
        assert list(details) == ["rows=100 malformed=0", "rows=102 malformed=2"]
    # And the new owner's completion goes through
    with engine.begin() as conn:
        assert chunk_repo.complete_many(conn, [Completion(again, 7, 0)]) == set()
    assert [e[:2] for e in _events(engine, "done")] == [
        (i, o) for i, o in zip(ids, ["w1", "w2", "w1"], strict=True)
    ]


def test_group_commit_gives_each_request_its_own_outcome() -> None:
    # Given a batch runner that fails odd requests
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int | BaseException]:
        seen.append(batch)
        return [ValueError(n) if n % 2 else n * 10 for n in batch]

    group: GroupCommit[int, int] = GroupCommit(run, max_batch=4)
    results: dict[int, object] = {}

    def submit(n: int) -> None:
        try:
            results[n] = group.submit(n)
        except ValueError as exc:
            results[n] = exc

    # When 20 threads submit at once
    threads = [threading.Thread(target=submit, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then each got its own outcome, every request ran once, no batch over the cap
    assert {n: r for n, r in results.items() if not isinstance(r, Exception)} == {
        n: n * 10 for n in range(0, 20, 2)
    }
    assert all(isinstance(results[n], ValueError) for n in range(1, 20, 2))
    assert sorted(n for b in seen for n in b) == list(range(20))
    assert max(len(b) for b in seen) <= 4 and group.requests == 20


def test_worker_threads_claim_and_complete_each_chunk_once(engine: Engine) -> None:
    # Given 40 queued chunks and one worker process's batches, 16 threads
    run, ids = _run(engine, 40, 40)
    batches = ChunkBatches(engine, "w1")
    won: list[int] = []
    lock = threading.Lock()

    def work(mine: list[int]) -> None:
        for chunk_id in mine:
            claim = batches.claim(chunk_id)
            if claim is None:
                continue
            batches.complete(Completion(claim, 5, 0))
            with lock:
                won.append(chunk_id)

    # When every thread goes for every chunk, in its own order (duplicates in batches)
    threads = [
        threading.Thread(target=work, args=(ids[k:] + ids[:k],)) for k in range(0, 40, 40 // 16)
    ][:16]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then each chunk was claimed once, completed once, by w1
    assert sorted(won) == ids
    assert _events(engine, "claimed") == [(i, "w1", 1) for i in ids]
    assert _events(engine, "done") == [(i, "w1", 1) for i in ids]
    with engine.connect() as conn:
        assert chunk_repo.counts_by_state(conn, run.id, Stage.MAP) == {"done": 40}
        assert conn.execute(select(func.sum(Chunk.rows_read))).scalar_one() == 200
    # And a completion of a chunk no longer ours raises ChunkLost in its thread
    stale = chunk_repo.Claim(ids[0], run, Stage.MAP, 0, KeyRange(b"k000", b"k001"), "w1", 1)
    try:
        batches.complete(Completion(stale, 1, 0))
    except ChunkLost:
        pass
    else:
        raise AssertionError("a done chunk was completed again")


class _CommitBreaks(ChunkBatches):
    """The next COMMIT loses its connection: after it landed (``landed``, as when
    MariaDB restarts mid-COMMIT) or before (the transaction rolled back)."""

    def __init__(self, engine: Engine, me: str, landed: bool) -> None:
        super().__init__(engine, me, deadline=5)
        self.landed = landed
        self.breaks = 1

    def commit(self, trans: RootTransaction) -> None:
        if not self.breaks:
            trans.commit()
            return
        self.breaks -= 1
        trans.commit() if self.landed else trans.rollback()
        raise OperationalError("COMMIT", {}, Exception("(2013, 'Lost connection')"))


def test_a_claim_whose_commit_landed_before_the_connection_broke_is_kept(engine: Engine) -> None:
    # Given a queued chunk, and a COMMIT that lands and then loses its connection
    _run_info, ids = _run(engine, 1, 1)
    batches = _CommitBreaks(engine, "w1", landed=True)
    # When the worker claims it
    claim = batches.claim(ids[0])
    # Then the claim is read back as landed and kept: no error, no stale hint
    assert claim is not None and (claim.owner, claim.attempt) == ("w1", 1)
    assert batches.settled == 1
    assert _events(engine, "claimed") == [(ids[0], "w1", 1)]
    # And the chunk completes under it
    batches.complete(Completion(claim, 3, 0))
    assert _events(engine, "done") == [(ids[0], "w1", 1)]


def test_a_claim_whose_commit_did_not_land_raises_and_is_retried(engine: Engine) -> None:
    # Given a queued chunk, and a COMMIT that fails before it lands
    _run_info, ids = _run(engine, 1, 1)
    batches = _CommitBreaks(engine, "w1", landed=False)
    # When the worker claims it, the COMMIT's error reaches the thread (which retries)
    with pytest.raises(OperationalError):
        batches.claim(ids[0])
    assert batches.settled == 1 and _events(engine, "claimed") == []
    # And the retry claims it, at attempt 1: nothing of the failed one remains
    claim = batches.claim(ids[0])
    assert claim is not None and claim.attempt == 1
    assert _events(engine, "claimed") == [(ids[0], "w1", 1)]


def test_a_completion_whose_commit_landed_before_the_connection_broke_is_done(
    engine: Engine,
) -> None:
    # Given two claimed chunks, and a COMMIT of their completion that lands, then breaks
    run, ids = _run(engine, 2, 2)
    batches = _CommitBreaks(engine, "w1", landed=True)
    batches.breaks = 0
    claims = [batches.claim(i) for i in ids]
    batches.breaks = 1
    # When both complete in one batch (and alone: the single-completion path)
    assert claims[0] is not None and claims[1] is not None
    batches._complete([Completion(claims[0], 2, 0), Completion(claims[1], 3, 0)])
    # Then they are done, once, with no ChunkLost for a completion that landed
    assert batches.settled == 1
    assert _events(engine, "done") == [(i, "w1", 1) for i in ids]
    with engine.connect() as conn:
        assert chunk_repo.counts_by_state(conn, run.id, Stage.MAP) == {"done": 2}
