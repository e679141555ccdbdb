"""A skewed day (issue 16) through the whole pipeline, on the embedded backends and
on the real services: one merchant takes most orders, with thousands of distinct
customers and products, and its customers and products are sharded over the
reduce buckets, reduced per shard and combined -- and ``verify`` still finds the
summaries byte-identical to a plain recomputation."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select

from nightfold.common.db.models import Run, RunEvent
from tests.support.pipeline import (
    PIPELINE_DAY,
    Cluster,
    assert_no_chunk_done_twice,
    assert_verifies,
    chunk_counts,
    run_state,
)

pytestmark = pytest.mark.slow

HOT = ("--hot-share", "0.6", "--hot-customers", "9000", "--hot-products", "2500")


@pytest.mark.parametrize(("rows", "seed_args"), [(20_000, HOT)])
def test_a_hot_merchant_is_sharded_and_exact(cluster: Cluster, db: Engine) -> None:
    # Given a day where one merchant has 60 % of the orders, 9,000 customers, 2,500 products
    cluster.env["NIGHTFOLD_CHUNK_ROWS"] = "4000"
    cluster.env["NIGHTFOLD_REDUCE_BUCKETS"] = "4"
    cluster.worker()
    cluster.worker()
    # When a master runs the day
    master = cluster.master(PIPELINE_DAY)
    assert master.wait(timeout=300) == 0, cluster.log_tail()
    # Then it went through the combine stage, every combine item done once
    assert run_state(db) == "succeeded"
    assert chunk_counts(db, "combine") == {"done": 4}
    with db.connect() as conn:
        kinds = set(conn.execute(select(RunEvent.kind)).scalars())
    assert {"run_reducing", "run_combining", "run_succeeded"} <= kinds
    assert_no_chunk_done_twice(db)
    # And the planner found the one hot merchant (only it was sharded), recorded with the plan
    with db.connect() as conn:
        recorded = conn.execute(select(Run.hot_groups)).scalar_one()
    assert len(json.loads(recorded)) == 1
    # And the summaries are exact, the hot merchant's distinct customers included
    assert_verifies(cluster, PIPELINE_DAY)
    top = json.loads(cluster.cli("status", "--json").stdout)["runs"][0]
    assert top["state"] == "succeeded"
