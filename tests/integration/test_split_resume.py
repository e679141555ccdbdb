"""Run-time splits and mid-chunk resume, as processes, on the embedded backends and
on the real MariaDB + RabbitMQ + HBase: a skewed day whose plan does not know the
skew gets its straggling chunks split while they run; a worker killed inside a
chunk after a checkpoint is taken over from that checkpoint. Either way ``verify``
passes, the run counts each row once, and no chunk is done twice."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine, func, select

from nightfold.common.db.models import Chunk, Segment
from nightfold.common.store import open_store
from tests.support.pipeline import (
    Cluster,
    assert_no_chunk_done_twice,
    assert_verifies,
    event_count,
    run_state,
    wait_for,
)
from tests.support.skew import skewed_in_two

DAY = "2026-11-24"
pytestmark = pytest.mark.slow


def paced(cluster: Cluster, **env: str) -> None:
    """Small chunks, checkpoints and batches, and a paced map (tests.support.jobs), so
    chunks last seconds and beats come every second."""
    cluster.env.update(
        {
            "NIGHTFOLD_JOB_MODULES": "tests.support.jobs",
            "NIGHTFOLD_SALT_BUCKETS": "2",
            "NIGHTFOLD_CHUNK_ROWS": "3000",
            "NIGHTFOLD_CHECKPOINT_ROWS": "1000",
            "NIGHTFOLD_SPLIT_MIN_ROWS": "500",
            "NIGHTFOLD_SCAN_BATCH": "100",
            "NIGHTFOLD_TEST_MAP_SLEEP": "0.02",
            **env,
        }
    )


def put(cluster: Cluster, rows: list) -> None:  # type: ignore[type-arg]
    store = open_store(cluster.env["NIGHTFOLD_STORE_URL"])
    try:
        store.ensure_table("nightfold_raw", ["o"])
        store.put_many("nightfold_raw", rows)
    finally:
        store.close()


def rows_read(cluster: Cluster) -> int:
    status = json.loads(cluster.cli("status", "--json", "--day", DAY).stdout)
    return int(status["runs"][0]["rows_read"])


@pytest.mark.parametrize("rows", [1000])
def test_a_straggling_chunk_is_split_while_it_runs(cluster: Cluster, db: Engine) -> None:
    # one salt bucket and two planned chunks: both are claimed at once, so the
    # queue is empty from the start and the master asks for splits right away
    paced(cluster, NIGHTFOLD_SALT_BUCKETS="1", NIGHTFOLD_CHUNK_ROWS="8000")
    early, late = skewed_in_two(dt.date.fromisoformat(DAY), 20_000, salt_buckets=1)
    put(cluster, early)
    # Given a run planned before the hot merchant's rows arrived (no worker yet)
    master = cluster.master(DAY, "--job", "paced_daily")
    wait_for(lambda: run_state(db) == "mapping", 120, "the run to be planned")
    with db.connect() as conn:
        planned = conn.execute(select(func.count()).where(Chunk.stage == "map")).scalar_one()
    put(cluster, late)
    # When two workers run it
    cluster.worker()
    cluster.worker()
    assert master.wait(timeout=300) == 0, cluster.log_tail()
    # Then the chunks that turned out large were split while they ran
    assert event_count(db, "split") >= 1, cluster.log_tail()
    with db.connect() as conn:
        total = conn.execute(select(func.count()).where(Chunk.stage == "map")).scalar_one()
    assert total == planned + event_count(db, "split")
    # And the summaries are exact, every row counted once, no chunk done twice
    assert_verifies(cluster, DAY, "--job", "paced_daily")
    assert rows_read(cluster) == len(early) + len(late)
    assert_no_chunk_done_twice(db)


@pytest.mark.parametrize("rows", [1000])
def test_a_worker_killed_mid_chunk_is_resumed_from_its_checkpoint(
    cluster: Cluster, db: Engine
) -> None:
    paced(cluster, NIGHTFOLD_CHUNK_ROWS="100000", NIGHTFOLD_WORKER_DEAD_SECONDS="5")
    early, late = skewed_in_two(dt.date.fromisoformat(DAY), 12_000, salt_buckets=2)
    put(cluster, early + late)
    master = cluster.master(DAY, "--job", "paced_daily")
    wait_for(lambda: run_state(db) == "mapping", 120, "the run to be planned")
    # Given a worker that dies (SIGKILL) inside its first chunk, after 4 checkpoints
    cluster.env["NIGHTFOLD_TEST_DIE_AFTER_ROWS"] = "4550"
    victim = cluster.worker()
    del cluster.env["NIGHTFOLD_TEST_DIE_AFTER_ROWS"]
    assert victim.wait(timeout=120) == -9, cluster.log_tail()
    with db.connect() as conn:
        before = {
            (int(i), int(s)): int(a)
            for i, s, a in conn.execute(select(Segment.chunk_idx, Segment.seq, Segment.attempt))
        }
    assert len(before) >= 4 and set(before.values()) == {1}, before
    # When another worker takes the chunk over
    cluster.worker()
    assert master.wait(timeout=300) == 0, cluster.log_tail()
    # Then it resumed after the last checkpoint: the numbering goes on under attempt 2,
    # and the victim's committed segments are kept as they were
    with db.connect() as conn:
        after = {
            (int(i), int(s)): int(a)
            for i, s, a in conn.execute(select(Segment.chunk_idx, Segment.seq, Segment.attempt))
        }
    assert {k: v for k, v in after.items() if k in before} == before
    (idx,) = {i for i, _ in before}
    assert max(s for (i, s), a in after.items() if i == idx and a == 2) > max(
        s for (i, s) in before if i == idx
    )
    assert event_count(db, "worker_dead") + event_count(db, "lease_expired") >= 1
    # And the summaries are exact, every row counted once
    assert_verifies(cluster, DAY, "--job", "paced_daily")
    assert rows_read(cluster) == len(early) + len(late)
    assert_no_chunk_done_twice(db)
