"""Bad input at the command line: one line, a named exit code, no traceback,
no password. Runs the real ``nightfold`` command in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightfold.common.errors import RET_CONFIG, RET_CONNECT, RET_SCHEMA
from tests.support.cli import final_error, nightfold, one_line_error


@pytest.mark.parametrize("day", ["2026-13-01", "yesterdayish", "22/11/2026", ""])
def test_invalid_day(day: str, tmp_path: Path) -> None:
    res = nightfold("master", "run", "--day", day, cwd=tmp_path)
    assert res.returncode == 2
    assert "invalid day" in res.stderr


def test_backfill_range_inverted(tmp_path: Path) -> None:
    res = nightfold("master", "run", "--from", "2026-11-22", "--to", "2026-11-01", cwd=tmp_path)
    assert res.returncode == RET_CONFIG
    assert "before --from" in one_line_error(res)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--day", "2026-11-22", "--select", "missing"), "go with --from/--to"),
        (("--day", "2026-11-22", "--max-active", "2"), "go with --from/--to"),
        (("--from", "2026-11-01", "--to", "2026-11-02", "--select", "all", "--rerun"), "not both"),
        (("--day", "2026-11-22", "--deadline", "7am"), "setting deadline"),
    ],
)
def test_partition_flags_are_checked(args: tuple[str, ...], said: str, tmp_path: Path) -> None:
    res = nightfold("master", "run", *args, cwd=tmp_path)
    assert res.returncode == RET_CONFIG
    assert said in one_line_error(res)


def test_unknown_job(tmp_path: Path) -> None:
    env = {"NIGHTFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    assert nightfold("db", "upgrade", env=env).returncode == 0
    res = nightfold("master", "run", "--day", "2026-11-22", "--job", "nope", env=env, cwd=tmp_path)
    assert res.returncode == RET_CONFIG
    assert "unknown job 'nope'" in one_line_error(res)


MALFORMED_SECRET = "Pa55@w0rd"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("NIGHTFOLD_DATABASE_URL", f"postgres://u:{MALFORMED_SECRET}@h/db"),
        ("NIGHTFOLD_BROKER_URL", f"kafka://u:{MALFORMED_SECRET}@h"),
        ("NIGHTFOLD_STORE_URL", f"hbase://u:{MALFORMED_SECRET}@"),
    ],
)
def test_malformed_urls(var: str, value: str, tmp_path: Path) -> None:
    # Given a malformed URL of each service, each with a password (holding "@")
    res = nightfold("status", env={var: value}, cwd=tmp_path)
    # Then one line names the URL with its password masked, and no part of the password
    assert res.returncode == RET_CONFIG
    line = one_line_error(res)
    assert "u:***@" in line
    assert "Pa55" not in line and "w0rd" not in line


def test_unreachable_database_masks_password(tmp_path: Path) -> None:
    url = "mysql+pymysql://nightfold:hunter2@127.0.0.1:1/nightfold"
    res = nightfold("status", env={"NIGHTFOLD_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == RET_CONNECT
    line = one_line_error(res)
    assert "hunter2" not in line and "***" in line


def test_schema_out_of_date(tmp_path: Path) -> None:
    env = {"NIGHTFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    res = nightfold("status", env=env, cwd=tmp_path)
    assert res.returncode == RET_SCHEMA
    assert "nightfold db upgrade" in one_line_error(res)


def test_config_show_masks(tmp_path: Path) -> None:
    env = {"NIGHTFOLD_BROKER_URL": "amqp://nightfold:topsecret@h:5672/v"}
    res = nightfold("config", "show", env=env, cwd=tmp_path)
    assert res.returncode == 0
    assert "topsecret" not in res.stdout and "amqp://nightfold:***@h:5672/v" in res.stdout


def _upgraded_sqlite(tmp_path: Path) -> dict[str, str]:
    env = {"NIGHTFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/nightfold.db"}
    assert nightfold("db", "upgrade", env=env).returncode == 0
    return env


def test_unreachable_store(tmp_path: Path) -> None:
    env = _upgraded_sqlite(tmp_path) | {"NIGHTFOLD_STORE_URL": "hbase://127.0.0.1:1"}
    res = nightfold("seed", "--day", "2026-11-22", "--rows", "10", env=env, cwd=tmp_path)
    assert res.returncode == RET_CONNECT
    assert "hbase" in one_line_error(res).lower()


@pytest.mark.parametrize("command", [("worker", "run"), ("master", "run", "--day", "2026-11-22")])
def test_unreachable_broker_gives_up_after_the_deadline(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    # Given a broker nobody listens on, and a 2 s connect deadline
    env = _upgraded_sqlite(tmp_path) | {
        "NIGHTFOLD_STORE_URL": f"local://{tmp_path}/store.sqlite",
        "NIGHTFOLD_BROKER_URL": "amqp://nightfold:hunter2@127.0.0.1:1/nightfold",
        "NIGHTFOLD_CONNECT_DEADLINE_SECONDS": "2",
    }
    assert nightfold("seed", "--day", "2026-11-22", "--rows", "100", env=env).returncode == 0
    # When a worker (or a master with chunks to publish) starts
    res = nightfold(*command, env=env, cwd=tmp_path, timeout=60)
    # Then it retries, gives up after the deadline with one masked line, exit 3
    assert res.returncode == RET_CONNECT, res.stderr
    line = final_error(res, "hunter2")
    assert "rabbitmq unavailable" in line and "gave up after 2s" in line
    assert "amqp://nightfold:***@127.0.0.1:1/nightfold" in line
