"""Bad input at the command line: one line, a named exit code, no traceback,
no password. Runs the real ``nightfold`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nightfold.common.errors import RET_CONFIG, RET_CONNECT, RET_SCHEMA


def nightfold(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    return subprocess.run(
        [sys.executable, "-m", "nightfold", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize("day", ["2026-13-01", "yesterdayish", "22/11/2026", ""])
def test_invalid_day(day: str, tmp_path: Path) -> None:
    res = nightfold("master", "run", "--day", day, cwd=tmp_path)
    assert res.returncode == 2
    assert "invalid day" in res.stderr


def test_backfill_range_inverted(tmp_path: Path) -> None:
    res = nightfold("master", "run", "--from", "2026-11-22", "--to", "2026-11-01", cwd=tmp_path)
    assert res.returncode == RET_CONFIG
    assert "before --from" in _one_line_error(res)


def test_unknown_job(tmp_path: Path) -> None:
    env = {"NIGHTFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    assert nightfold("db", "upgrade", env=env).returncode == 0
    res = nightfold("master", "run", "--day", "2026-11-22", "--job", "nope", env=env, cwd=tmp_path)
    assert res.returncode == RET_CONFIG
    assert "unknown job 'nope'" in _one_line_error(res)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("NIGHTFOLD_DATABASE_URL", "postgres://u:pw@h/db"),
        ("NIGHTFOLD_BROKER_URL", "kafka://h"),
        ("NIGHTFOLD_STORE_URL", "hbase://"),
    ],
)
def test_malformed_urls(var: str, value: str, tmp_path: Path) -> None:
    res = nightfold("status", env={var: value}, cwd=tmp_path)
    assert res.returncode == RET_CONFIG
    line = _one_line_error(res)
    assert "pw" not in line.replace("***", "")


def test_unreachable_database_masks_password(tmp_path: Path) -> None:
    url = "mysql+pymysql://nightfold:hunter2@127.0.0.1:1/nightfold"
    res = nightfold("status", env={"NIGHTFOLD_DATABASE_URL": url}, cwd=tmp_path)
    assert res.returncode == RET_CONNECT
    line = _one_line_error(res)
    assert "hunter2" not in line and "***" in line


def test_schema_out_of_date(tmp_path: Path) -> None:
    env = {"NIGHTFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    res = nightfold("status", env=env, cwd=tmp_path)
    assert res.returncode == RET_SCHEMA
    assert "nightfold db upgrade" in _one_line_error(res)


def test_config_show_masks(tmp_path: Path) -> None:
    env = {"NIGHTFOLD_BROKER_URL": "amqp://nightfold:topsecret@h:5672/v"}
    res = nightfold("config", "show", env=env, cwd=tmp_path)
    assert res.returncode == 0
    assert "topsecret" not in res.stdout and "amqp://nightfold:***@h:5672/v" in res.stdout
