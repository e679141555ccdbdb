"""Settings: one object filled from defaults, a TOML file, the environment and
CLI flags, in rising precedence. Invalid values fail with one line naming the
setting; secrets are masked wherever settings are shown.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from nightfold.common.deadline import parse_deadline
from nightfold.common.errors import ConfigError
from nightfold.common.params import RunParams
from nightfold.common.store import parse_store_url
from nightfold.common.urls import MASK, mask_url, scheme_of

ENV_PREFIX = "NIGHTFOLD_"

DEFAULT_DATA_DIR = "nightfold-data"


@dataclass(frozen=True)
class Settings:
    """Everything a nightfold process is configured with."""

    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR}/nightfold.db"
    broker_url: str = "db://"
    store_url: str = f"local://{DEFAULT_DATA_DIR}/store.sqlite"
    job: str = "merchant_daily"
    job_modules: str = ""
    """Comma-separated modules to import for jobs that register themselves."""
    # run parameters (frozen on the run row when planned); RunParams owns the defaults
    chunk_rows: int = RunParams.chunk_rows
    reduce_buckets: int = RunParams.reduce_buckets
    max_in_flight: int = RunParams.max_in_flight
    max_attempts: int = RunParams.max_attempts
    lease_seconds: float = RunParams.lease_seconds
    salt_buckets: int = RunParams.salt_buckets
    republish_seconds: float = RunParams.republish_seconds
    scan_batch: int = RunParams.scan_batch
    max_cell_bytes: int = RunParams.max_cell_bytes
    checkpoint_rows: int = RunParams.checkpoint_rows
    checkpoint_seconds: float = RunParams.checkpoint_seconds
    split_min_rows: int = RunParams.split_min_rows
    spill_bytes: int = RunParams.spill_bytes
    # processes
    poll_interval: float = 0.25
    master_stale_seconds: float = 30.0
    shutdown_grace_seconds: float = 30.0
    connect_deadline_seconds: float = 120.0
    worker_heartbeat_seconds: float = 2.0
    """How often a worker process records that it is alive (its own thread)."""
    worker_dead_seconds: float = 6.0
    """A claim whose worker has not been seen for this long is taken back before
    its lease runs out (must exceed two heartbeats)."""
    metrics_port: int = 0
    """Serve Prometheus metrics on this port (0: off)."""
    pushgateway_url: str = ""
    """Where the master pushes its metrics, periodically and at exit (empty: off)."""
    push_interval_seconds: float = 15.0
    """How often a running master pushes (its heartbeat gauge shows it is alive)."""
    resume_lookback_days: int = 7
    """The nightly master first resumes unfinished runs of this many earlier days (0: off)."""
    deadline: str = ""
    """When a day's summaries are due, HH:MM UTC on the next day (empty: none). The
    master exports each recent day's due time; NightfoldDayLate fires past it."""
    log_level: str = "INFO"
    log_format: str = "human"
    # the web console (``nightfold web``): CLI-side, but settings like every other
    web_host: str = "127.0.0.1"
    """Where the console listens: loopback unless the operator says otherwise."""
    web_port: int = 8650
    web_user: str = "operator"
    web_password: str = ""
    """The operator's password (HTTP basic auth, or ``Authorization: Bearer``);
    empty: the console is read-only and refuses every action."""

    def __post_init__(self) -> None:
        for name, schemes in (
            ("database_url", ("mysql", "mariadb", "sqlite")),
            ("broker_url", ("amqp", "amqps", "db", "dbpoll")),
            ("store_url", ("hbase", "local")),
        ):
            url = getattr(self, name)
            if not isinstance(url, str) or "://" not in url:
                raise ConfigError(f"setting {name}: {mask_url(str(url))!r} is not a URL")
            if scheme_of(url) not in schemes:
                raise ConfigError(
                    f"setting {name}: scheme of {mask_url(url)!r} must be one of "
                    + ", ".join(schemes)
                )
        parse_store_url(self.store_url)  # raises ConfigError naming the URL
        try:
            make_url(self.database_url)
        except ArgumentError:
            raise ConfigError(
                f"setting database_url: {mask_url(self.database_url)!r} is not a valid URL"
            ) from None
        if self.log_format not in ("human", "json"):
            raise ConfigError(f"setting log_format: {self.log_format!r} is not human or json")
        for name in (
            "poll_interval",
            "master_stale_seconds",
            "shutdown_grace_seconds",
            "connect_deadline_seconds",
            "push_interval_seconds",
            "worker_heartbeat_seconds",
            "worker_dead_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"setting {name} must be positive")
        if not 0 <= self.web_port <= 65535:
            raise ConfigError(f"setting web_port: {self.web_port} is not a port")
        if not 0 <= self.resume_lookback_days <= 366:
            raise ConfigError("setting resume_lookback_days must be between 0 and 366")
        if not self.worker_dead_seconds > 2 * self.worker_heartbeat_seconds:
            raise ConfigError(
                f"setting worker_dead_seconds ({self.worker_dead_seconds:g}) must be more than "
                f"twice worker_heartbeat_seconds ({self.worker_heartbeat_seconds:g})"
            )
        parse_deadline(self.deadline)  # raises ConfigError naming the setting
        self.run_params()  # validates the run knobs

    def run_params(self) -> RunParams:
        """The run knobs of these settings, to be frozen on a new run row."""
        return RunParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RunParams)})

    def masked(self) -> dict[str, Any]:
        """The settings as a dict with passwords in URLs masked: safe to print."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if key.endswith("_url"):
                out[key] = mask_url(value)
            elif key.endswith("_password") and value:
                out[key] = MASK
        return out


def _coerce(name: str, value: Any, kind: Any) -> Any:
    if value is None:
        return None
    try:
        if kind in (int, "int"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind in (float, "float"):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a number") from None
    return str(value)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge defaults < TOML file < ``NIGHTFOLD_*`` environment < ``overrides``."""
    env = os.environ if env is None else env
    fields = {f.name: f.type for f in dataclasses.fields(Settings)}
    merged: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        merged.update(_read_toml(Path(path), fields))
    for name in fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value not in (None, ""):
            merged[name] = value
    for name, value in (overrides or {}).items():
        if value is not None:
            if name not in fields:
                raise ConfigError(f"unknown setting {name!r}")
            merged[name] = value
    typed = {k: _coerce(k, v, fields[k]) for k, v in merged.items()}
    return Settings(**typed)


def _read_toml(path: Path, fields: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    table = data.get("nightfold", data)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return dict(table)
