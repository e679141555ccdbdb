"""Fixtures for integration tests against the real services (never imitations).

Finding a service and the skip-locally / fail-in-CI rule live in
:mod:`tests.support.services` (``require_service``), shared by every service.
This file carves a private namespace per test out of each service -- for HBase
a table prefix -- and removes it afterwards, so tests never see each other's
rows. To add a service: a session fixture that calls ``require_service`` with a
cheap probe that does not use the code under test, and a function fixture that
makes and cleans up the namespace.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import happybase
import pytest
from sqlalchemy import Engine

from nightfold.common.db.engine import make_engine
from nightfold.common.store import HBaseURL, parse_store_url
from nightfold.common.urls import mask_url, with_query
from tests.support.databases import fresh_database
from tests.support.pipeline import PIPELINE_DAY, PIPELINE_ROWS, Cluster
from tests.support.queues import private_queue
from tests.support.services import require_service, unique_name

PROBE_TIMEOUT_MS = 5000
PRESPLIT_TOOLING = ("NIGHTFOLD_JAVA", "NIGHTFOLD_HBASE_LIB", "NIGHTFOLD_HBASE_ZOOKEEPER")


# -- HBase ---------------------------------------------------------------------------------


def _hbase_spec(url: str) -> HBaseURL:
    spec = parse_store_url(url)
    if not isinstance(spec, HBaseURL):
        raise ValueError(f"not an hbase:// URL: {mask_url(url)}")
    return spec


def _hbase_connection(url: str, table_prefix: str | None = None) -> happybase.Connection:
    """A plain happybase connection: probing and cleanup do not rely on HBaseStore."""
    spec = _hbase_spec(url)
    return happybase.Connection(
        spec.host,
        spec.port,
        timeout=PROBE_TIMEOUT_MS if table_prefix is None else spec.timeout_ms,
        table_prefix=table_prefix,
        transport=spec.transport,
        protocol=spec.protocol,
    )


def probe_hbase(url: str) -> None:
    """The Thrift gateway accepts a connection and lists tables (so HBase itself answers)."""
    spec = _hbase_spec(url)
    socket.create_connection((spec.host, spec.port), timeout=PROBE_TIMEOUT_MS / 1000).close()
    conn = _hbase_connection(url)
    try:
        conn.tables()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def hbase_service_url() -> str:
    """The real HBase's store URL (``NIGHTFOLD_STORE_URL``), probed once per session."""
    return require_service("HBase", "NIGHTFOLD_STORE_URL", probe_hbase)


@pytest.fixture
def hbase_url(hbase_service_url: str) -> Iterator[str]:
    """A store URL with a private ``table_prefix``; its tables are dropped afterwards."""
    prefix = unique_name("t")
    yield with_query(hbase_service_url, table_prefix=prefix)
    conn = _hbase_connection(hbase_service_url, table_prefix=prefix)
    try:
        for table in conn.tables():
            conn.delete_table(table, disable=True)
    finally:
        conn.close()


# -- RabbitMQ ------------------------------------------------------------------------------


def probe_rabbitmq(url: str) -> None:
    """An AMQP connection opens with the configured user and vhost."""
    import pika

    params = pika.URLParameters(url.split("?", 1)[0])
    params.connection_attempts = 1
    params.socket_timeout = 5
    pika.BlockingConnection(params).close()


@pytest.fixture(scope="session")
def rabbitmq_service_url() -> str:
    return require_service("RabbitMQ", "NIGHTFOLD_BROKER_URL", probe_rabbitmq)


@pytest.fixture
def broker_url(rabbitmq_service_url: str) -> Iterator[str]:
    """A broker URL with a private work queue (and dead-letter queue), deleted afterwards."""
    with private_queue(rabbitmq_service_url, "nightfold.t") as queue:
        yield with_query(rabbitmq_service_url, queue=queue)


# -- the pipeline as processes ---------------------------------------------------------


@pytest.fixture
def rows() -> int:
    """Rows seeded for a test; a test may parametrize ``rows`` to use fewer."""
    return PIPELINE_ROWS


@pytest.fixture
def seed_args() -> tuple[str, ...]:
    """Extra ``nightfold seed`` arguments (e.g. ``--regions``); a test may parametrize them."""
    return ()


@pytest.fixture(params=["embedded", "real"])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, rows: int, seed_args: tuple[str, ...]
) -> Iterator[Cluster]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    # Where the pre-split tool finds Java, the HBase jars and ZooKeeper: the machine's, kept.
    env.update({k: os.environ[k] for k in PRESPLIT_TOOLING if k in os.environ})
    env.update(
        NIGHTFOLD_CHUNK_ROWS="10000",
        NIGHTFOLD_LEASE_SECONDS="4",
        NIGHTFOLD_MAX_IN_FLIGHT="8",
        NIGHTFOLD_LOG_LEVEL="INFO",
        NIGHTFOLD_MASTER_STALE_SECONDS="10",
    )
    kind = "sqlite" if request.param == "embedded" else "mariadb"
    with fresh_database(kind, tmp_path) as db_url:
        env["NIGHTFOLD_DATABASE_URL"] = db_url
        if request.param == "embedded":
            env["NIGHTFOLD_STORE_URL"] = f"local://{tmp_path / 'store.sqlite'}"
            env["NIGHTFOLD_BROKER_URL"] = "db://"
        else:
            env["NIGHTFOLD_STORE_URL"] = request.getfixturevalue("hbase_url")
            env["NIGHTFOLD_BROKER_URL"] = request.getfixturevalue("broker_url")
        c = Cluster(env=env, logs=tmp_path)
        for args in (
            ("db", "upgrade"),
            ("seed", "--day", PIPELINE_DAY, "--rows", str(rows), *seed_args),
        ):
            res = c.cli(*args)
            assert res.returncode == 0, res.stderr
        try:
            yield c
        finally:
            c.stop_all()


@pytest.fixture
def db(cluster: Cluster) -> Iterator[Engine]:
    engine = make_engine(cluster.env["NIGHTFOLD_DATABASE_URL"])
    yield engine
    engine.dispose()
