"""Issue 13: what the store refuses, end to end, on the embedded backends and on the
real MariaDB + RabbitMQ + HBase.

- A group whose partial is larger than HBase accepts in one cell (long ids: about
  13 MB in one chunk) is split across cells of at most ``max_cell_bytes``; the run
  succeeds and verifies. Before: HBase answered "KeyValue size too large", the
  worker released the chunk uncounted and the run looped in ``mapping`` forever.
- A deterministic refusal (every summary write goes to a column family the table
  lacks) counts as an attempt: the chunk dies after ``max_attempts`` with the
  store's reason, the run fails, nothing loops; after the fix ``--rerun`` succeeds.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.errors import RET_RUN_FAILED
from nightfold.common.keys import PARTIALS_TABLE, KeyRange
from nightfold.common.store import Row, open_store
from tests.support.pipeline import (
    PIPELINE_DAY,
    Cluster,
    assert_verifies,
    event_count,
    run_state,
    summary_stage,
)

DAY = PIPELINE_DAY
LONG_ID_ROWS = 6500
ID_PAD = 1000
MAX_CELL_BYTES = 1 << 20

pytestmark = pytest.mark.slow


def _long_id_rows() -> Iterator[Row]:
    """One merchant's orders, all in salt 00, each with a new 1 KB customer and product."""
    for i in range(LONG_ID_ROWS):
        yield (
            b"00|20261122|mlongids|o%07d" % i,
            {
                b"o:merchant": b"mlongids",
                b"o:customer": b"c%07d" % i + b"x" * ID_PAD,
                b"o:product": b"p%07d" % i + b"y" * ID_PAD,
                b"o:amount_cents": b"%d" % (100 + i),
                b"o:currency": b"EUR",
                b"o:status": b"paid",
                b"o:ts": b"1795379449",
            },
        )


@pytest.mark.parametrize("rows", [5_000])
def test_a_partial_larger_than_an_hbase_cell_is_split_and_the_day_verifies(
    cluster: Cluster, db: Engine
) -> None:
    # Given a merchant whose ids make its partial about 13 MB in one map chunk
    store = open_store(cluster.env["NIGHTFOLD_STORE_URL"])
    try:
        store.put_many("nightfold_raw", _long_id_rows(), batch_size=500)
        cluster.env["NIGHTFOLD_CHUNK_ROWS"] = "50000"  # one chunk per salt: all in one
        cluster.worker()
        cluster.worker()
        # When the run goes through map and reduce
        master = cluster.master(DAY)
        # Then it succeeds, and the summaries equal the oracle's
        assert master.wait(timeout=300) == 0, cluster.log_tail()
        assert run_state(db) == "succeeded"
        assert_verifies(cluster, DAY)
        # And no cell in the partials table exceeds the bound; the big group took many
        # (over its shards: merchant_daily splits a merchant over the reduce buckets)
        sizes: list[int] = []
        pieces = 0
        for _key, cells in store.scan(PARTIALS_TABLE, KeyRange(b"", b""), batch_size=10):
            sizes += [len(v) for v in cells.values()]
            pieces += sum(1 for c in cells if c.startswith(b"p:mlongids\x1f") and b"\xff" in c)
        assert sizes and max(sizes) <= MAX_CELL_BYTES
        assert pieces > 10, pieces
    finally:
        store.close()


def _claims_per_chunk(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunEvent.chunk_id, func.count())
            .where(RunEvent.kind == "claimed")
            .group_by(RunEvent.chunk_id)
        )
        return {int(c): int(n) for c, n in rows}


@pytest.mark.parametrize("rows", [5_000])
def test_a_deterministic_store_error_kills_the_chunk_and_fails_the_run(
    cluster: Cluster, db: Engine
) -> None:
    max_attempts = 2
    cluster.env.update(
        NIGHTFOLD_JOB_MODULES="tests.support.jobs", NIGHTFOLD_MAX_ATTEMPTS=str(max_attempts)
    )
    workers = [cluster.worker(), cluster.worker()]
    # When every summary write is refused by the store (a column family it lacks)
    master = cluster.master(DAY, "--job", "stray_family_daily")
    # Then the run fails within max_attempts, promptly, instead of looping
    assert master.wait(timeout=180) == RET_RUN_FAILED, cluster.log_tail()
    assert run_state(db) == "failed"
    with db.connect() as conn:
        reduce = conn.execute(
            select(Chunk.state, Chunk.attempt, Chunk.error).where(Chunk.stage == summary_stage(db))
        ).all()
        run_error = conn.execute(select(Run.error).order_by(Run.id.desc()).limit(1)).scalar_one()
    dead = [(attempt, error) for state, attempt, error in reduce if state == "dead"]
    assert dead, reduce
    reason = (
        "NoSuchColumnFamilyException"
        if "hbase" in cluster.env["NIGHTFOLD_STORE_URL"]
        else "no such column family"
    )
    for attempt, error in dead:
        assert attempt == max_attempts
        assert error.startswith("StoreRejected: ") and reason in error, error
    assert all(attempt <= max_attempts for _, attempt, _ in reduce)
    assert max(_claims_per_chunk(db).values()) <= max_attempts
    assert event_count(db, "dead") >= 1
    assert run_error and reason in run_error, run_error
    status = cluster.cli("status", "--json")
    assert json.loads(status.stdout)["runs"][0]["state"] == "failed"
    assert reason in status.stdout
    # And after the fix, a rerun succeeds and verifies
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(timeout=60) == 0
    cluster.env["NIGHTFOLD_TEST_FAMILY_FIXED"] = "1"
    cluster.worker()
    rerun = cluster.cli("master", "run", "--day", DAY, "--job", "stray_family_daily", "--rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr + cluster.log_tail()
    assert_verifies(cluster, DAY, "--job", "stray_family_daily")
