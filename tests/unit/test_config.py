"""Settings precedence (defaults < file < env < flags), validation, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightfold.common.config import load_settings
from nightfold.common.errors import ConfigError

SECRET_DB = "mysql+pymysql://nightfold:s3cret@db:3306/nightfold"


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "nightfold.toml"
    cfg.write_text(
        '[nightfold]\nchunk_rows = 111\nmax_in_flight = 7\nstore_url = "hbase://h:9090"\n'
    )
    env = {"NIGHTFOLD_CHUNK_ROWS": "222", "NIGHTFOLD_CONFIG": str(cfg)}
    s = load_settings({"max_in_flight": 9}, env=env)
    assert s.chunk_rows == 222  # env beats file
    assert s.max_in_flight == 9  # flag beats file
    assert s.store_url == "hbase://h:9090"  # file beats default


def test_defaults_are_embedded() -> None:
    s = load_settings(env={})
    assert s.database_url.startswith("sqlite:///")
    assert s.broker_url == "db://"
    assert s.store_url.startswith("local://")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NIGHTFOLD_DATABASE_URL": "postgres://x/y"}, "database_url"),
        ({"NIGHTFOLD_BROKER_URL": "not a url"}, "broker_url"),
        ({"NIGHTFOLD_STORE_URL": "s3://bucket"}, "store_url"),
        ({"NIGHTFOLD_CHUNK_ROWS": "many"}, "chunk_rows"),
        ({"NIGHTFOLD_CHUNK_ROWS": "0"}, "chunk_rows"),
        ({"NIGHTFOLD_LOG_FORMAT": "xml"}, "log_format"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(env=env)


def test_bad_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"NIGHTFOLD_CONFIG": str(tmp_path / "missing.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("chunk_rows = = 3")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings(env={"NIGHTFOLD_CONFIG": str(bad)})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("chunk_size = 3")
    with pytest.raises(ConfigError, match="chunk_size"):
        load_settings(env={"NIGHTFOLD_CONFIG": str(unknown)})


def test_masked_hides_passwords() -> None:
    s = load_settings({"database_url": SECRET_DB}, env={})
    assert "s3cret" not in str(s.masked())
    assert s.masked()["database_url"] == "mysql+pymysql://nightfold:***@db:3306/nightfold"


def test_worker_liveness_defaults() -> None:
    s = load_settings(env={})
    assert s.worker_heartbeat_seconds == 2.0
    assert s.worker_dead_seconds == 6.0


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NIGHTFOLD_WORKER_HEARTBEAT_SECONDS": "0"}, "worker_heartbeat_seconds must be positive"),
        ({"NIGHTFOLD_WORKER_DEAD_SECONDS": "-1"}, "worker_dead_seconds must be positive"),
        ({"NIGHTFOLD_WORKER_DEAD_SECONDS": "4"}, "more than twice worker_heartbeat_seconds"),
        (
            {"NIGHTFOLD_WORKER_HEARTBEAT_SECONDS": "5", "NIGHTFOLD_WORKER_DEAD_SECONDS": "8"},
            r"worker_dead_seconds \(8\)",
        ),
        ({"NIGHTFOLD_WORKER_DEAD_SECONDS": "soon"}, "worker_dead_seconds"),
    ],
)
def test_worker_dead_must_exceed_two_heartbeats(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(env=env)


def test_worker_dead_just_above_two_heartbeats_is_accepted() -> None:
    env = {"NIGHTFOLD_WORKER_HEARTBEAT_SECONDS": "1", "NIGHTFOLD_WORKER_DEAD_SECONDS": "2.5"}
    s = load_settings(env=env)
    assert (s.worker_heartbeat_seconds, s.worker_dead_seconds) == (1.0, 2.5)
