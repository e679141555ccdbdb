"""TLS to the real MariaDB and RabbitMQ (deploy/local/services serves both with a
certificate of its own throwaway CA): the URL's ``ssl_*`` options reach the
drivers, the session is encrypted, and a certificate that fails verification is
one line and exit 3 at once, never a retry loop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from nightfold.common.db.engine import make_engine
from nightfold.common.errors import RET_CONNECT
from nightfold.common.transport.messages import Hint
from nightfold.common.transport.rabbitmq import RabbitConsumer, RabbitPublisher, queue_depth
from nightfold.common.urls import with_query
from tests.support.cli import final_error, nightfold, one_line_error
from tests.support.databases import fresh_database
from tests.support.queues import private_queue
from tests.support.services import require_service

WRONG_CA = "/etc/ssl/certs/ca-certificates.crt"
"""The system's CAs: a real bundle that did not sign the test certificate."""


def _readable(path: str) -> None:
    Path(path).read_bytes()


@pytest.fixture(scope="session")
def tls_ca() -> str:
    return require_service("the test CA", "NIGHTFOLD_TEST_TLS_CA", _readable)


@pytest.fixture(scope="session")
def amqps_service_url(tls_ca: str) -> str:
    def probe(url: str) -> None:
        RabbitPublisher(with_query(url, ssl_ca=tls_ca)).backlog()

    return require_service("RabbitMQ over TLS", "NIGHTFOLD_TEST_AMQPS_URL", probe)


@pytest.fixture
def amqps_url(amqps_service_url: str, tls_ca: str, rabbitmq_service_url: str) -> Iterator[str]:
    """An amqps:// URL verified against the test CA, with a private queue (deleted
    afterwards over the plain listener, which serves the same vhost)."""
    with private_queue(rabbitmq_service_url, "nightfold.tls") as queue:
        yield with_query(amqps_service_url, queue=queue, ssl_ca=tls_ca)


@pytest.fixture
def tls_db_url(tmp_path: Path, tls_ca: str) -> Iterator[str]:
    with fresh_database("mariadb", tmp_path) as url:
        yield with_query(url, ssl_ca=tls_ca)


def test_database_session_is_encrypted(tls_db_url: str) -> None:
    engine = make_engine(tls_db_url)
    try:
        with engine.connect() as conn:
            cipher = conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1]
    finally:
        engine.dispose()
    assert cipher, "the connection is not encrypted"


def test_cli_over_tls(tls_db_url: str, tmp_path: Path) -> None:
    env = {
        "NIGHTFOLD_DATABASE_URL": tls_db_url,
        "NIGHTFOLD_STORE_URL": f"local://{tmp_path}/store.sqlite",
    }
    for args in (("db", "upgrade"), ("status",)):
        res = nightfold(*args, env=env)
        assert res.returncode == 0, res.stderr


def test_database_certificate_not_trusted(tls_db_url: str) -> None:
    bad = with_query(tls_db_url, ssl_ca=WRONG_CA)
    started = time.monotonic()
    res = nightfold("status", env={"NIGHTFOLD_DATABASE_URL": bad})
    assert res.returncode == RET_CONNECT, res.stderr
    line = one_line_error(res)
    assert "CERTIFICATE_VERIFY_FAILED" in line or "certificate verify failed" in line
    assert time.monotonic() - started < 30


def test_hints_over_amqps(amqps_url: str) -> None:
    pub = RabbitPublisher(amqps_url)
    pub.publish([Hint(1, i, "map", i) for i in range(3)])
    pub.close()
    consumer = RabbitConsumer(amqps_url, prefetch=3)
    got = []
    try:
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            d = consumer.next_delivery(0.2)
            if d is not None:
                got.append(d)
                consumer.ack(d)
        consumer.pump(0.3)
    finally:
        consumer.close()
    assert sorted(d.hint.chunk_id for d in got if d.hint) == [0, 1, 2]
    assert queue_depth(amqps_url) == (0, 0)


def test_broker_certificate_not_trusted(amqps_url: str, tmp_path: Path) -> None:
    env = {
        "NIGHTFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/nightfold.db",
        "NIGHTFOLD_BROKER_URL": with_query(amqps_url, ssl_ca=WRONG_CA),
        "NIGHTFOLD_CONNECT_DEADLINE_SECONDS": "600",
    }
    assert nightfold("db", "upgrade", env=env).returncode == 0
    started = time.monotonic()
    res = nightfold("worker", "run", env=env, timeout=300)
    assert res.returncode == RET_CONNECT, res.stderr
    assert "TLS: certificate verify failed" in final_error(res, "nightfold:nightfold@")
    assert time.monotonic() - started < 60, "a certificate that fails is not retried"
