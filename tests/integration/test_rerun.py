"""A rerun after the raw day was corrected leaves exactly the new generation's
summaries, on the embedded backends and on the real MariaDB + RabbitMQ + HBase:
the summary rows of a merchant whose rows were all deleted are gone, a merchant
whose rows all became malformed keeps no order-value statistics, and the whole
day equals a recomputation from the raw rows -- also when the master and a worker
are SIGKILLed while the rerun reduces."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

import pytest
from sqlalchemy import Engine

from nightfold.common.jobs.base import Job, MapOutput
from nightfold.common.keys import KeyRange, summary_key, summary_prefix
from nightfold.common.store import Store, open_store
from nightfold.jobs.merchant_daily import COL_AMOUNT, INVALID_GROUP, diagnose
from tests.support.jobs import SlowReduceDaily
from tests.support.pipeline import (
    PIPELINE_DAY,
    Cluster,
    assert_verifies,
    chunk_counts,
    claimed_by,
    kill,
    run_state,
    summary_stage,
    wait_for,
)

DAY = PIPELINE_DAY
DATE = dt.date.fromisoformat(DAY)
ALL = KeyRange(b"", b"")
JOB = SlowReduceDaily.name
STATS = [
    b"s:min_order_cents",
    b"s:max_order_cents",
    b"s:mean_order_cents",
    b"s:p50_order_cents",
    b"s:p95_order_cents",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def store(cluster: Cluster) -> Any:
    """The cluster's store, seen from the test; the cluster runs the test jobs."""
    cluster.env["NIGHTFOLD_JOB_MODULES"] = "tests.support.jobs"
    s = open_store(cluster.env["NIGHTFOLD_STORE_URL"])
    yield s
    s.close()


def correct_the_raw_day(store: Store, raw_table: str) -> tuple[str, str]:
    """Delete every row of one merchant, make every row of another malformed (a
    non-numeric amount); returns ``(gone, broken)``. Both had valid orders before."""
    rows: dict[str, list[bytes]] = defaultdict(list)
    valid: Counter[str] = Counter()
    for key, cols in store.scan(raw_table, ALL):
        group, reason = diagnose(key, cols)
        rows[group].append(key)
        valid[group] += reason is None
    busy = sorted((g for g in valid if g != INVALID_GROUP and valid[g] >= 3), key=valid.get)
    gone, broken = busy[-1], busy[-2]
    store.delete_cells(raw_table, [(key, None) for key in rows[gone]])
    store.put_many(raw_table, [(key, {COL_AMOUNT: b"12.50"}) for key in rows[broken]])
    return gone, broken


def assert_summaries_exact(store: Store, job: Job[Any], gone: str, broken: str) -> None:
    """The summary table, read whole, equals a recomputation from the whole raw table."""
    out: MapOutput[Any] = MapOutput()
    job.map_rows(list(store.scan(job.raw_table, ALL)), out)
    expected = {summary_key(DATE, g): job.finalize(g, p) for g, p in out.partials.items()}
    stored = dict(store.scan(job.summary_table, ALL))
    # The two corrections, directly
    assert summary_key(DATE, gone) not in stored
    broken_row = stored[summary_key(DATE, broken)]
    assert [c for c in STATS if c in broken_row] == []
    assert broken_row[b"s:orders"] == b"0" and int(broken_row[b"s:malformed"]) >= 3
    # And every row and cell of the day
    assert all(key.startswith(summary_prefix(DATE)) for key in stored)
    assert sorted(stored) == sorted(expected)
    for key, cells in expected.items():
        assert stored[key] == cells, key


def run_and_correct(cluster: Cluster, store: Store) -> tuple[str, str]:
    """Generation 1 succeeds and verifies; then the raw day is corrected."""
    first = cluster.cli("master", "run", "--day", DAY, "--job", JOB)
    assert first.returncode == 0, first.stdout + first.stderr + cluster.log_tail()
    assert_verifies(cluster, DAY, "--job", JOB)
    return correct_the_raw_day(store, SlowReduceDaily().raw_table)


@pytest.mark.parametrize("rows", [20_000])
def test_rerun_after_a_correction_leaves_exactly_the_new_generation(
    cluster: Cluster, db: Engine, store: Store
) -> None:
    # Given a day that ran, then had one merchant deleted and one made malformed
    cluster.worker()
    cluster.worker()
    gone, broken = run_and_correct(cluster, store)
    # When it is rerun
    rerun = cluster.cli("master", "run", "--day", DAY, "--job", JOB, "--rerun")
    # Then the run succeeds, verify passes, and the stored day is exactly the new one
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr + cluster.log_tail()
    assert run_state(db) == "succeeded"
    assert_verifies(cluster, DAY, "--job", JOB)
    assert_summaries_exact(store, SlowReduceDaily(), gone, broken)


@pytest.mark.parametrize("rows", [20_000])
def test_rerun_killed_while_writing_its_summaries_still_leaves_exactly_the_new_generation(
    cluster: Cluster, db: Engine, store: Store
) -> None:
    cluster.worker()
    gone, broken = run_and_correct(cluster, store)
    # Given a rerun whose summary writes are slow (about 5 s per item of the stage that
    # writes them: reduce on this day, which has no hot merchant; combine on one that has)
    cluster.env["NIGHTFOLD_TEST_FINALIZE_SLEEP"] = "0.05"
    victim = cluster.worker()
    master = cluster.master(DAY, "--job", JOB, "--rerun")
    state = {"reduce": "reducing", "combine": "combining"}

    def mid_summaries() -> bool:
        stage = summary_stage(db)
        return (
            run_state(db) == state[stage]
            and chunk_counts(db, stage).get("done", 0) >= 1
            and claimed_by(db, victim.pid)
        )

    wait_for(mid_summaries, 240, "the rerun's summary writes to be under way", poll=0.05)
    # When the master and a worker holding an item that writes summaries are SIGKILLed
    kill(master)
    kill(victim)
    assert run_state(db) == state[summary_stage(db)], "killed too late to test a restart"
    # Then a restarted master resumes the same generation and it succeeds
    cluster.worker()
    restarted = cluster.master(DAY, "--job", JOB)
    assert restarted.wait(timeout=300) == 0, cluster.log_tail()
    assert run_state(db) == "succeeded"
    assert_verifies(cluster, DAY, "--job", JOB)
    assert_summaries_exact(store, SlowReduceDaily(), gone, broken)
