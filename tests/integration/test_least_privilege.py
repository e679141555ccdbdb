"""The least-privilege accounts of docs/deploy.md are enough to run the pipeline.

``deploy/local/services`` provisions them as the docs say: a MariaDB account with
SELECT, INSERT, UPDATE, DELETE only (the schema belongs to the migration account)
and a RabbitMQ account limited to the ``nightfold.*`` queues of its vhost. A
master and a worker run a day with them on the real services; the same account
trying ``db upgrade`` gets one line naming the missing privilege."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from nightfold.common.errors import RET_CONNECT
from nightfold.common.urls import with_query
from tests.support.cli import one_line_error
from tests.support.databases import fresh_database
from tests.support.pipeline import Cluster
from tests.support.queues import private_queue
from tests.support.services import require_service

DAY = "2026-11-22"
ROWS = 20_000


def _app_url(var: str) -> str:
    return require_service(f"the least-privilege account ({var})", var, lambda _: None)


@pytest.fixture
def app_cluster(
    tmp_path: Path, hbase_url: str, rabbitmq_service_url: str
) -> Iterator[tuple[Cluster, Cluster]]:
    """(owner, app): the same database, store and queue, as the owner account
    (migrations, seeding) and as the least-privilege accounts (master, workers)."""
    app_db = make_url(_app_url("NIGHTFOLD_TEST_APP_DATABASE_URL"))
    app_broker = _app_url("NIGHTFOLD_TEST_APP_BROKER_URL")
    with (
        fresh_database("mariadb", tmp_path) as owner_db,
        private_queue(rabbitmq_service_url, "nightfold.lp") as queue,
    ):
        base = {
            "NIGHTFOLD_STORE_URL": hbase_url,
            "NIGHTFOLD_CHUNK_ROWS": "4000",
            "NIGHTFOLD_LOG_LEVEL": "INFO",
        }
        owner = Cluster(
            env=base
            | {
                "NIGHTFOLD_DATABASE_URL": owner_db,
                "NIGHTFOLD_BROKER_URL": with_query(rabbitmq_service_url, queue=queue),
            },
            logs=tmp_path,
        )
        database = make_url(owner_db).database
        app = Cluster(
            env=base
            | {
                "NIGHTFOLD_DATABASE_URL": app_db.set(database=database).render_as_string(
                    hide_password=False
                ),
                "NIGHTFOLD_BROKER_URL": with_query(app_broker, queue=queue),
            },
            logs=tmp_path,
        )
        try:
            yield owner, app
        finally:
            app.stop_all()


def test_pipeline_runs_with_least_privilege_accounts(app_cluster: tuple[Cluster, Cluster]) -> None:
    owner, app = app_cluster
    # Given the schema and the day, made by the owner account
    for args in (("db", "upgrade"), ("seed", "--day", DAY, "--rows", str(ROWS))):
        res = owner.cli(*args)
        assert res.returncode == 0, res.stderr
    # When a worker and the master run with the least-privilege accounts
    app.worker()
    master = app.master(DAY)
    # Then the run succeeds and verifies
    assert master.wait(timeout=300) == 0, app.log_tail()
    res = app.cli("verify", "--day", DAY)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr


def test_data_only_account_cannot_migrate(app_cluster: tuple[Cluster, Cluster]) -> None:
    _, app = app_cluster
    res = app.cli("db", "upgrade")
    assert res.returncode == RET_CONNECT, res.stderr
    line = one_line_error(res)
    assert "command denied" in line and "nightfold_app:***@" in line
