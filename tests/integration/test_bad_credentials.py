"""Wrong credentials against the real MariaDB and RabbitMQ: the service answers
and refuses, so the command exits at once with one masked line and exit 3,
instead of retrying until its connect deadline (set to 10 minutes here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from nightfold.common.errors import RET_CONNECT
from tests.support.cli import final_error, nightfold, one_line_error
from tests.support.databases import fresh_database

WRONG = "not-the-password-9f3k"
DAY = "2026-11-22"


def with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def with_vhost(url: str, vhost: str) -> str:
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{vhost}" + (f"?{query}" if query else "")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh real MariaDB database at head, a local store with a day seeded."""
    with fresh_database("mariadb", tmp_path) as db_url:
        env = {
            "NIGHTFOLD_DATABASE_URL": db_url,
            "NIGHTFOLD_STORE_URL": f"local://{tmp_path}/store.sqlite",
            "NIGHTFOLD_CONNECT_DEADLINE_SECONDS": "600",
        }
        for args in (("db", "upgrade"), ("seed", "--day", DAY, "--rows", "500")):
            res = nightfold(*args, env=env)
            assert res.returncode == 0, res.stderr
        yield env


@pytest.mark.parametrize("command", [("status",), ("worker", "run"), ("master", "run")])
def test_wrong_database_password(command: tuple[str, ...], env: dict[str, str]) -> None:
    bad = with_password(env["NIGHTFOLD_DATABASE_URL"], WRONG)
    args = (*command, "--day", DAY) if command[0] == "master" else command
    started = time.monotonic()
    res = nightfold(*args, env=env | {"NIGHTFOLD_DATABASE_URL": bad}, timeout=120)
    assert res.returncode == RET_CONNECT, res.stderr
    line = one_line_error(res)
    assert WRONG not in line and ":***@" in line
    assert "Access denied" in line
    assert time.monotonic() - started < 60, "refusals are not retried"


@pytest.mark.parametrize("command", [("worker", "run"), ("master", "run", "--day", DAY)])
def test_wrong_broker_password(
    command: tuple[str, ...], env: dict[str, str], rabbitmq_service_url: str
) -> None:
    # Given the real RabbitMQ with a wrong password
    bad = with_password(rabbitmq_service_url, WRONG)
    started = time.monotonic()
    # When a worker (or a master with chunks to publish) starts
    res = nightfold(*command, env=env | {"NIGHTFOLD_BROKER_URL": bad}, timeout=300)
    # Then it exits at once, not after its 10-minute deadline, with one masked line
    assert res.returncode == RET_CONNECT, res.stderr
    line = final_error(res, WRONG)
    assert "login refused" in line and ":***@" in line
    assert time.monotonic() - started < 60, "refusals are not retried"


def test_unknown_broker_vhost(env: dict[str, str], rabbitmq_service_url: str) -> None:
    bad = with_vhost(rabbitmq_service_url, "no-such-vhost")
    res = nightfold("worker", "run", env=env | {"NIGHTFOLD_BROKER_URL": bad}, timeout=300)
    assert res.returncode == RET_CONNECT, res.stderr
    assert "access to the vhost refused" in final_error(res)
