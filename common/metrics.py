"""Prometheus metrics of masters and workers, defined once.

Processes expose them with ``--metrics-port`` (``serve``); the master, a cron
batch job, can also push its final values to a Pushgateway (``push``). The
names here are the contract with ``deploy/prometheus`` rules and the Grafana
dashboard; a test scrapes live processes and checks each one exists.
"""

from __future__ import annotations

import logging

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    push_to_gateway,
    start_http_server,
)

from nightfold.common.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

# -- workers ---------------------------------------------------------------
CHUNKS_CLAIMED = Counter("nightfold_chunks_claimed_total", "Chunks claimed.", ["job", "stage"])
CHUNKS_COMPLETED = Counter(
    "nightfold_chunks_completed_total", "Chunks completed.", ["job", "stage"]
)
CHUNKS_RETRIED = Counter(
    "nightfold_chunks_retried_total",
    "Chunk attempts that failed and will be retried.",
    ["job", "stage"],
)
CHUNKS_DEAD = Counter(
    "nightfold_chunks_dead_total", "Chunks given up after max_attempts.", ["job", "stage"]
)
CHUNKS_RELEASED = Counter(
    "nightfold_chunks_released_total",
    "Chunks given back unfinished (shutdown, cancel).",
    ["job", "stage"],
)
CHUNKS_LOST = Counter(
    "nightfold_chunks_lost_total", "Claims fenced out after a lease expiry.", ["job", "stage"]
)
ROWS_SCANNED = Counter("nightfold_rows_scanned_total", "Raw rows folded by map chunks.", ["job"])
ROWS_MALFORMED = Counter(
    "nightfold_rows_malformed_total", "Malformed raw rows quarantined.", ["job"]
)
CHUNK_SECONDS = Histogram(
    "nightfold_chunk_duration_seconds",
    "Wall time of one chunk attempt.",
    ["job", "stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
MESSAGES_REDELIVERED = Counter(
    "nightfold_messages_redelivered_total", "Hints the broker delivered again."
)
MESSAGES_DEAD_LETTERED = Counter(
    "nightfold_messages_dead_lettered_total", "Unparseable messages sent to the dead-letter queue."
)
WORKER_BUSY = Gauge("nightfold_worker_busy_chunks", "Chunks this worker is processing now.")

# -- master ----------------------------------------------------------------
HINTS_PUBLISHED = Counter(
    "nightfold_hints_published_total", "Hints published (first time and again).", ["job"]
)
LEASE_EXPIRIES = Counter(
    "nightfold_lease_expiries_total", "Claims taken back after their lease ran out.", ["job"]
)
RUN_CHUNKS = Gauge(
    "nightfold_run_chunks",
    "Chunks of the current run by stage and state.",
    ["job", "day", "stage", "state"],
)
RUN_IN_FLIGHT = Gauge(
    "nightfold_run_chunks_in_flight",
    "Chunks queued or claimed (bounded by max_in_flight).",
    ["job", "day"],
)
RUN_STATE = Gauge(
    "nightfold_run_state",
    "1 for the current state of the master's run.",
    ["job", "day", "state"],
)
RUN_ROWS = Gauge("nightfold_run_rows_read", "Raw rows folded so far in the run.", ["job", "day"])
LAST_SUCCESS = Gauge(
    "nightfold_last_success_timestamp_seconds",
    "When the job's last run succeeded (unix time).",
    ["job"],
)
RUN_DURATION = Gauge(
    "nightfold_run_duration_seconds", "Wall time of the master's last run.", ["job", "day"]
)

ALL_NAMES = sorted(
    m._name
    for m in (
        CHUNKS_CLAIMED,
        CHUNKS_COMPLETED,
        CHUNKS_RETRIED,
        CHUNKS_DEAD,
        CHUNKS_RELEASED,
        CHUNKS_LOST,
        ROWS_SCANNED,
        ROWS_MALFORMED,
        CHUNK_SECONDS,
        MESSAGES_REDELIVERED,
        MESSAGES_DEAD_LETTERED,
        WORKER_BUSY,
        HINTS_PUBLISHED,
        LEASE_EXPIRIES,
        RUN_CHUNKS,
        RUN_IN_FLIGHT,
        RUN_STATE,
        RUN_ROWS,
        LAST_SUCCESS,
        RUN_DURATION,
    )
)


def serve(port: int | None, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on ``port`` (no-op for None)."""
    if port is None:
        return
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        raise ConfigError(f"metrics port {port}: {exc.strerror or exc}") from exc
    log.info("metrics on http://%s:%d/metrics", addr, port)


def push(gateway: str | None, job: str, grouping: dict[str, str]) -> None:
    """Push this process's metrics to a Pushgateway (the master is a batch job)."""
    if not gateway:
        return
    try:
        push_to_gateway(gateway, job=job, registry=REGISTRY, grouping_key=grouping, timeout=10)
    except OSError as exc:
        raise ServiceUnavailable("pushgateway", f"{gateway}: {exc}") from exc
