"""A night in containers: the image that deploy/Dockerfile builds (``make image``)
runs the migration, two workers and the master, with podman and host networking,
against the real MariaDB, RabbitMQ and HBase. The master's container is killed
(SIGKILL) mid-map and started again, as a restart policy does; the night resumes,
and ``verify`` (in a container too) finds the summaries exact, with no map chunk
done twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nightfold.common.db.engine import make_engine
from tests.support.containers import image_or_skip, pod
from tests.support.databases import fresh_database
from tests.support.pipeline import (
    Cluster,
    assert_no_chunk_done_twice,
    chunk_counts,
    run_state,
    wait_for,
)

DAY = "2026-11-22"
ROWS = 120_000

pytestmark = pytest.mark.slow


def test_night_in_containers_survives_a_killed_master(
    tmp_path: Path, hbase_url: str, broker_url: str
) -> None:
    image = image_or_skip()
    with fresh_database("mariadb", tmp_path) as db_url:
        env = {
            "NIGHTFOLD_DATABASE_URL": db_url,
            "NIGHTFOLD_BROKER_URL": broker_url,
            "NIGHTFOLD_STORE_URL": hbase_url,
            "NIGHTFOLD_CHUNK_ROWS": "4000",
            "NIGHTFOLD_LEASE_SECONDS": "6",
            "NIGHTFOLD_MAX_IN_FLIGHT": "6",
            "NIGHTFOLD_MASTER_STALE_SECONDS": "10",
            "NIGHTFOLD_LOG_FORMAT": "human",
        }
        host = Cluster(env={**os.environ, **env}, logs=tmp_path)
        db: Engine = make_engine(db_url)
        with pod(image, env) as p:
            # Given the schema migrated by the image's one-shot `db upgrade`
            migrated = p.once("db", "upgrade")
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
            # and a day of raw rows in HBase
            seeded = host.cli("seed", "--day", DAY, "--rows", str(ROWS))
            assert seeded.returncode == 0, seeded.stderr
            # and two worker containers, healthy by the image's own health check
            workers = [p.start(f"worker-{i}", "worker", "run") for i in (1, 2)]
            wait_for(lambda: all(p.healthy(w) for w in workers), 60, "healthy workers", 0.5)
            # When the master's container runs the night and is SIGKILLed mid-map
            master = p.start("master", "master", "run", "--day", DAY)
            wait_for(lambda: chunk_counts(db).get("done", 0) >= 2, 180, "2 map chunks done")
            p.podman("kill", "--signal", "KILL", master)
            # (podman reports "stopped" for a moment before "exited")
            wait_for(lambda: p.state(master)[0] == "exited", 30, "the master container exited")
            assert p.state(master) == ("exited", 137), p.tail()
            assert run_state(db) == "mapping", "killed too late to test a mid-map restart"
            done_before = chunk_counts(db).get("done", 0)
            # and the same container is started again (what `restart: on-failure` does)
            p.podman("start", master)
            # Then the night resumes and succeeds
            assert p.wait(master, timeout=600) == 0, p.tail()
            assert run_state(db) == "succeeded"
            assert done_before < sum(chunk_counts(db).values())
            log = p.logs(master)
            assert "took ownership from dead" in log, log[-3000:]
            # and the workers are still healthy, and stop cleanly on SIGTERM
            assert all(p.healthy(w) for w in workers), p.tail()
            for w in workers:
                p.podman("stop", "-t", "40", w)
                assert p.state(w) == ("exited", 0), p.tail()
            # And verify, in a container, finds the summaries exact
            verified = p.once("verify", "--day", DAY)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert "OK" in verified.stdout
            assert_no_chunk_done_twice(db)
        db.dispose()
