"""The whole pipeline, as processes, on the embedded backends and on the real
MariaDB + RabbitMQ + HBase, with the same assertions: seed, run a master and two
workers, ``verify`` passes; kill the master or a worker mid-map and it still
passes, with no done chunk redone."""

from __future__ import annotations

import json
import signal

import pytest
from sqlalchemy import Engine

from nightfold.common.errors import RET_CONFLICT, RET_RUN_FAILED
from tests.support.pipeline import (
    PIPELINE_DAY,
    PIPELINE_ROWS,
    Cluster,
    add_poison_row,
    assert_no_chunk_done_twice,
    assert_verifies,
    chunk_counts,
    claimed_by,
    event_count,
    kill,
    run_state,
    wait_for,
)

DAY = PIPELINE_DAY
ROWS = PIPELINE_ROWS

pytestmark = pytest.mark.slow


def test_two_workers_verify(cluster: Cluster, db: Engine) -> None:
    # Given two workers and a master
    cluster.worker()
    cluster.worker()
    master = cluster.master(DAY)
    # When the master finishes
    assert master.wait(timeout=300) == 0, cluster.log_tail()
    # Then the run succeeded and the summaries equal the oracle's
    assert run_state(db) == "succeeded"
    assert_verifies(cluster, DAY)
    assert_no_chunk_done_twice(db)
    # And every malformed row is quarantined with its reason, none twice
    status = json.loads(cluster.cli("status", "--json").stdout)
    malformed = status["runs"][0]["rows_malformed"]
    q = json.loads(cluster.cli("quarantine", "--day", DAY, "--limit", "100000", "--json").stdout)
    assert malformed == int(ROWS * 0.005) and len(q["rows"]) == malformed
    assert len({r["key"] for r in q["rows"]}) == malformed
    assert {r["reason"] for r in q["rows"]} >= {"bad_key", "bad_amount", "bad_status"}
    # And running the master again for the same day is a no-op success
    again = cluster.cli("master", "run", "--day", DAY)
    assert again.returncode == 0, again.stderr
    assert "succeeded" in again.stdout


def test_master_killed_mid_map_resumes(cluster: Cluster, db: Engine) -> None:
    cluster.worker()
    cluster.worker()
    master = cluster.master(DAY)
    # Given some but not all map chunks are done
    wait_for(lambda: chunk_counts(db).get("done", 0) >= 3, 120, "3 map chunks done")
    # When the master is SIGKILLed and restarted
    kill(master)
    assert run_state(db) == "mapping", "killed too late to test a mid-map restart"
    done_before = chunk_counts(db).get("done", 0)
    restarted = cluster.master(DAY)
    # Then it resumes, the run succeeds, verify passes, no done chunk was redone
    assert restarted.wait(timeout=300) == 0, cluster.log_tail()
    assert done_before < sum(chunk_counts(db).values())
    assert_verifies(cluster, DAY)
    assert_no_chunk_done_twice(db)


def test_worker_killed_mid_chunk_is_taken_over(cluster: Cluster, db: Engine) -> None:
    victim = cluster.worker()
    cluster.worker()
    master = cluster.master(DAY)
    # Given the victim holds a claim
    wait_for(lambda: claimed_by(db, victim.pid), 120, "the victim to claim a chunk", poll=0.02)
    # When it is SIGKILLed mid-chunk
    kill(victim)
    # Then its lease expires or its heartbeat goes stale (whichever the master sees
    # first), the chunk is taken over, and the numbers are exact
    assert master.wait(timeout=300) == 0, cluster.log_tail()
    assert event_count(db, "lease_expired") + event_count(db, "worker_dead") >= 1
    assert_verifies(cluster, DAY)
    assert_no_chunk_done_twice(db)


@pytest.mark.parametrize("rows", [40_000])
@pytest.mark.parametrize("seed_args", [("--regions", "48")])
def test_a_presplit_day_verifies_and_its_rerun_plans_from_guideposts(
    cluster: Cluster, db: Engine
) -> None:
    # Given a day in a raw table pre-split into 48 regions, and two workers
    cluster.worker()
    cluster.worker()
    # When the master plans it (from the regions and bounded probes) and runs it
    master = cluster.master(DAY)
    assert master.wait(timeout=300) == 0, cluster.log_tail()
    # Then every region piece is a chunk of its own at least, and the numbers are exact
    assert sum(chunk_counts(db).values()) >= 48
    assert_verifies(cluster, DAY)
    # When the day is run again (generation 2): planned from generation 1's chunks
    rerun = cluster.cli("master", "run", "--day", DAY, "--rerun")
    assert rerun.returncode == 0, rerun.stderr + cluster.log_tail()
    assert "estimated from guideposts" in rerun.stderr, rerun.stderr
    # Then it is exact too, and no chunk was done twice
    assert_verifies(cluster, DAY)
    assert_no_chunk_done_twice(db)


@pytest.mark.parametrize("rows", [30_000])
def test_sigterm_lets_a_worker_finish_its_chunk(cluster: Cluster, db: Engine) -> None:
    worker = cluster.worker()
    master = cluster.master(DAY)
    # Given the worker holds a claim
    wait_for(lambda: claimed_by(db, worker.pid), 120, "a claim", poll=0.02)
    # When it gets SIGTERM
    worker.send_signal(signal.SIGTERM)
    # Then it exits 0 without leaving a claim behind
    assert worker.wait(timeout=60) == 0, cluster.log_tail()
    assert not claimed_by(db, worker.pid)
    # And another worker completes the run exactly
    cluster.worker()
    assert master.wait(timeout=300) == 0, cluster.log_tail()
    assert_verifies(cluster, DAY)
    assert_no_chunk_done_twice(db)


@pytest.mark.parametrize("rows", [30_000])
def test_second_master_refuses_then_cancel_stops_the_run(cluster: Cluster, db: Engine) -> None:
    # Given a master driving the run (no workers, so it cannot finish)
    first = cluster.master(DAY)
    wait_for(lambda: run_state(db) == "mapping", 120, "the run to be planned")
    # When a second master starts for the same run
    second = cluster.cli("master", "run", "--day", DAY, timeout=120)
    # Then it refuses with one clear line and the conflict exit code
    assert second.returncode == RET_CONFLICT, second.stderr
    assert "owned by master" in second.stderr and "Traceback" not in second.stderr
    # When the run is cancelled
    res = cluster.cli("cancel", "--day", DAY)
    assert res.returncode == 0, res.stderr
    # Then the master sees it, stops, and tells cron the run did not succeed
    assert first.wait(timeout=60) == RET_RUN_FAILED
    assert run_state(db) == "cancelled"


@pytest.mark.parametrize("rows", [5_000])
def test_backfill_runs_every_day(cluster: Cluster, db: Engine) -> None:
    # Given two seeded days and a worker
    assert (
        cluster.cli("seed", "--day", "2026-11-21", "--rows", "4000", "--seed", "7").returncode == 0
    )
    cluster.worker()
    # When the master backfills both
    res = cluster.cli("master", "run", "--from", "2026-11-21", "--to", DAY)
    # Then both runs succeed and verify
    assert res.returncode == 0, res.stdout + res.stderr + cluster.log_tail()
    assert res.stdout.count("succeeded") == 2
    for day in ("2026-11-21", DAY):
        out = cluster.cli("verify", "--day", day)
        assert out.returncode == 0, out.stdout + out.stderr
    # And gc keeps the latest succeeded run's partials unless told --all
    kept = cluster.cli("gc", "--day", DAY)
    assert kept.returncode == 0 and "0 run(s) collected" in kept.stdout, kept.stderr
    gone = cluster.cli("gc", "--day", DAY, "--all")
    assert gone.returncode == 0 and "1 run(s) collected" in gone.stdout, gone.stderr
    assert " 0 partial rows" not in gone.stdout
    out = cluster.cli("verify", "--day", DAY)  # the summaries stay
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("rows", [5_000])
def test_poison_chunk_dies_fails_the_run_and_a_rerun_after_the_fix_succeeds(
    cluster: Cluster, db: Engine
) -> None:
    add_poison_row(cluster)
    cluster.env.update(NIGHTFOLD_JOB_MODULES="tests.support.jobs", NIGHTFOLD_MAX_ATTEMPTS="2")
    worker = cluster.worker()
    # When the run meets a row that makes the job raise
    master = cluster.master(DAY, "--job", "poison_daily")
    # Then the chunk is retried up to max_attempts, dies, and the run fails with the reason
    assert master.wait(timeout=180) == RET_RUN_FAILED, cluster.log_tail()
    assert run_state(db) == "failed"
    assert event_count(db, "failed") == 1 and event_count(db, "dead") == 1
    status = cluster.cli("status", "--json")
    assert "dead after 2 attempts" in status.stdout and "poison row" in status.stdout
    # And after the fix, a rerun succeeds and verifies
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    cluster.env["NIGHTFOLD_TEST_POISON_FIXED"] = "1"
    cluster.worker()
    rerun = cluster.cli("master", "run", "--day", DAY, "--job", "poison_daily", "--rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr + cluster.log_tail()
    out = cluster.cli("verify", "--day", DAY, "--job", "poison_daily")
    assert out.returncode == 0, out.stdout + out.stderr
