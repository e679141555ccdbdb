"""Prometheus metrics of masters and workers, defined once.

The nightfold job's name is the label ``nightfold_job``, never ``job``: that
one belongs to Prometheus (the scrape job) and to the Pushgateway's grouping.

Processes expose them with ``--metrics-port`` (``serve``); the master, a cron
batch job, can also push to a Pushgateway: every few seconds while it runs
(``Pusher``, so its heartbeat gauge shows it is alive) and once at exit (``push``). The
names here are the contract with ``deploy/prometheus`` rules and the Grafana
dashboard; a test scrapes live processes and checks each one exists.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    pushadd_to_gateway,
    start_http_server,
)

from nightfold.common.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

# -- workers ---------------------------------------------------------------
CHUNKS_CLAIMED = Counter(
    "nightfold_chunks_claimed_total", "Chunks claimed.", ["nightfold_job", "stage"]
)
CHUNKS_COMPLETED = Counter(
    "nightfold_chunks_completed_total", "Chunks completed.", ["nightfold_job", "stage"]
)
CHUNKS_RETRIED = Counter(
    "nightfold_chunks_retried_total",
    "Chunk attempts that failed and will be retried.",
    ["nightfold_job", "stage"],
)
CHUNKS_DEAD = Counter(
    "nightfold_chunks_dead_total", "Chunks given up after max_attempts.", ["nightfold_job", "stage"]
)
CHUNKS_RELEASED = Counter(
    "nightfold_chunks_released_total",
    "Chunks given back unfinished (shutdown, cancel).",
    ["nightfold_job", "stage"],
)
CHUNKS_LOST = Counter(
    "nightfold_chunks_lost_total",
    "Claims fenced out after a lease expiry.",
    ["nightfold_job", "stage"],
)
ROWS_SCANNED = Counter(
    "nightfold_rows_scanned_total", "Raw rows folded by map chunks.", ["nightfold_job"]
)
ROWS_MALFORMED = Counter(
    "nightfold_rows_malformed_total", "Malformed raw rows quarantined.", ["nightfold_job"]
)
CHUNK_SECONDS = Histogram(
    "nightfold_chunk_duration_seconds",
    "Wall time of one chunk attempt.",
    ["nightfold_job", "stage"],
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
    "nightfold_hints_published_total", "Hints published (first time and again).", ["nightfold_job"]
)
LEASE_EXPIRIES = Counter(
    "nightfold_lease_expiries_total",
    "Claims taken back after their lease ran out.",
    ["nightfold_job"],
)
WORKER_DEAD_TAKEOVERS = Counter(
    "nightfold_worker_dead_takeovers_total",
    "Claims taken back before their lease ran out because their worker stopped heartbeating.",
    ["nightfold_job"],
)
RUN_CHUNKS = Gauge(
    "nightfold_run_chunks",
    "Chunks of the current run by stage and state.",
    ["nightfold_job", "day", "stage", "state"],
)
RUN_IN_FLIGHT = Gauge(
    "nightfold_run_chunks_in_flight",
    "Chunks queued or claimed (bounded by max_in_flight).",
    ["nightfold_job", "day"],
)
RUN_STATE = Gauge(
    "nightfold_run_state",
    "1 for the current state of the master's run.",
    ["nightfold_job", "day", "state"],
)
RUN_ROWS = Gauge(
    "nightfold_run_rows_read", "Raw rows folded so far in the run.", ["nightfold_job", "day"]
)
LAST_SUCCESS = Gauge(
    "nightfold_last_success_timestamp_seconds",
    "When the job's last run succeeded (unix time).",
    ["nightfold_job"],
)
RUN_DURATION = Gauge(
    "nightfold_run_duration_seconds",
    "Wall time of the master's last run.",
    ["nightfold_job", "day"],
)
MASTER_HEARTBEAT = Gauge(
    "nightfold_master_heartbeat_timestamp_seconds",
    "When the master last heartbeated its run (unix time). Pushed every "
    "push_interval_seconds: a dead master cannot say it died, so its last push ages.",
    ["nightfold_job", "day"],
)
DAY_DEADLINE = Gauge(
    "nightfold_day_deadline_timestamp_seconds",
    "When the day's summaries are due (the deadline setting; unix time). Exported by the "
    "master for the days it drives and the earlier days of its window that have a run.",
    ["nightfold_job", "day"],
)
DAY_SUCCEEDED = Gauge(
    "nightfold_day_succeeded",
    "1 when the day's latest run succeeded, else 0 (same days as the deadline).",
    ["nightfold_job", "day"],
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
        WORKER_DEAD_TAKEOVERS,
        RUN_CHUNKS,
        RUN_IN_FLIGHT,
        RUN_STATE,
        RUN_ROWS,
        LAST_SUCCESS,
        RUN_DURATION,
        MASTER_HEARTBEAT,
        DAY_DEADLINE,
        DAY_SUCCEEDED,
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


def prime(jobs: list[str]) -> None:
    """Create every (job, stage) child at 0, so a counter's first event is an
    increase Prometheus can see (a series born at 1 has no ``increase``)."""
    for job in jobs:
        for stage in ("map", "reduce", "combine"):
            for counter in (
                CHUNKS_CLAIMED,
                CHUNKS_COMPLETED,
                CHUNKS_RETRIED,
                CHUNKS_DEAD,
                CHUNKS_RELEASED,
                CHUNKS_LOST,
                CHUNK_SECONDS,
            ):
                counter.labels(job, stage)
        for counter in (
            ROWS_SCANNED,
            ROWS_MALFORMED,
            HINTS_PUBLISHED,
            LEASE_EXPIRIES,
            WORKER_DEAD_TAKEOVERS,
        ):
            counter.labels(job)


def push(gateway: str | None, nightfold_job: str) -> None:
    """Add this process's metrics to the Pushgateway group of ``nightfold_job``
    (the master is a batch job). ``pushadd`` replaces only the metrics sent, so
    a failed run does not erase the group's last success timestamp."""
    if not gateway:
        return
    try:
        pushadd_to_gateway(
            gateway,
            job="nightfold_master",
            registry=REGISTRY,
            grouping_key={"nightfold_job": nightfold_job},
            timeout=10,
        )
    except OSError as exc:
        raise ServiceUnavailable("pushgateway", f"{gateway}: {exc}") from exc


class Pusher:
    """Pushes to the Pushgateway every ``every`` seconds from a daemon thread, so
    the master's heartbeat gauge there ages when the master dies (a SIGKILLed
    process pushes nothing at exit). A failed push is logged, not raised: the
    run goes on without its metrics."""

    def __init__(self, gateway: str | None, nightfold_job: str, every: float) -> None:
        self.gateway, self.nightfold_job, self.every = gateway, nightfold_job, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def __enter__(self) -> Pusher:
        if self.gateway:
            self._thread = threading.Thread(target=self._run, name="pushgateway", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                push(self.gateway, self.nightfold_job)
            except ServiceUnavailable as exc:
                if not self._failing:
                    log.warning("metrics push failed (retrying every %.0fs): %s", self.every, exc)
                self._failing = True
            else:
                self._failing = False
