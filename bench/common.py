"""Shared helpers of the benchmarks: services, the seeded day, fresh namespaces,
processes and peak RSS, and the results files (running nightfold: ``bench.runner``).

Every benchmark measures ratios or paired comparisons inside one run (this
machine is shared and has 2 cores): variants are interleaved A B A B and the
figures are medians of the per-pair ratios. Nothing here is a test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nightfold.common.urls import with_query
from tests.support import services
from tests.support.databases import mariadb_database
from tests.support.queues import private_queue
from tests.support.services import unique_name

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / ".nightfold" / "bench"
"""Scratch space (git-ignored): logs, embedded stores, the cached oracle."""

DAY = dt.date(2026, 11, 20)
ROWS = int(os.environ.get("NIGHTFOLD_BENCH_ROWS", "2000000"))
"""Rows of the benchmark day (at least 2M for the issue's figures; smaller to try things)."""
PREFIX = os.environ.get("NIGHTFOLD_BENCH_PREFIX", "nfbench32")
"""HBase table prefix holding the seeded day and every benchmark's outputs."""
REGIONS = int(os.environ.get("NIGHTFOLD_BENCH_REGIONS", "32"))
"""Regions the seeded day's raw table is pre-split into (salt buckets, then inside the day)."""
REPS = int(os.environ.get("NIGHTFOLD_BENCH_REPS", "2"))
"""Pairs per paired comparison (A B A B ...)."""
DEFAULT_CHUNK_ROWS = 50_000
"""nightfold's default ``chunk_rows`` (RunParams)."""
SALT_BUCKETS = 16
MIB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- services ------------------------------------------------------------------------------


def service_url(var: str) -> str:
    """A service URL, found as the tests find it (:func:`tests.support.services.service_url`);
    a benchmark cannot run without it, so a missing one ends the run with one line."""
    url = services.service_url(var)
    if url is None:
        raise SystemExit(
            f"{var} is not set and {services.SERVICES_ENV} has none: run `make services-up`"
        )
    return url


def database_url() -> str:
    return service_url("NIGHTFOLD_DATABASE_URL")


def broker_url() -> str:
    return service_url("NIGHTFOLD_BROKER_URL")


def store_url(prefix: str = PREFIX) -> str:
    return with_query(service_url("NIGHTFOLD_STORE_URL"), table_prefix=prefix)


def hbase_address() -> tuple[str, int]:
    parts = urlsplit(service_url("NIGHTFOLD_STORE_URL"))
    return parts.hostname or "127.0.0.1", parts.port or 9090


@contextlib.contextmanager
def fresh_mariadb(label: str = "b") -> Iterator[str]:
    """A new MariaDB database ``nightfold_<label><hex>`` at the schema head, dropped after;
    dropping rides out a MariaDB restart, and a database left behind is only logged."""
    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.migrate import upgrade

    with mariadb_database(database_url(), f"nightfold_{label}", attempts=10, say=log) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@contextlib.contextmanager
def fresh_sqlite(directory: Path) -> Iterator[str]:
    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.migrate import upgrade

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{unique_name('nightfold')}.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def fresh_queue(label: str = "nightfold.b") -> Iterator[str]:
    """A broker URL with a private work queue (and dead-letter queue), deleted after;
    cleanup rides out a broker restart, and a queue left behind is only logged."""
    base = broker_url()
    with private_queue(base, label, attempts=10, say=log) as queue:
        yield with_query(base, queue=queue)


# -- the seeded day ------------------------------------------------------------------------


def count_day_rows(store: Any, day: dt.date = DAY) -> int:
    """Rows of ``day`` in the raw table (a keys-only scan)."""
    from nightfold.common.keys import day_ranges

    return sum(
        1
        for key_range in day_ranges(day, SALT_BUCKETS)
        for _ in store.scan("nightfold_raw", key_range, keys_only=True, batch_size=5000)
    )


def _seeded_marker(url: str, rows: int, day: dt.date, regions: int) -> Path:
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    return WORK / f"seeded-{tag}-{day:%Y%m%d}-{rows}-{regions}.json"


def ensure_seeded(
    url: str | None = None, rows: int = ROWS, day: dt.date = DAY, regions: int = REGIONS
) -> dict[str, Any]:
    """Seed ``rows`` rows of ``day`` once into a raw table pre-split into ``regions``.

    Cached: a marker file (under ``.nightfold/bench``) written after a seeding
    that was counted exact, checked against the table's region count and its
    first key of the day, so a 8M-row day is not counted again every run.
    Anything else drops the raw table and seeds it again (pre-splitting needs a
    new table).
    """
    from nightfold.common.keys import day_ranges
    from nightfold.common.store import open_store
    from nightfold.ops.seeding import seed_day

    url = url or store_url()
    marker = _seeded_marker(url, rows, day, regions)
    store = open_store(url)
    try:
        store.ensure_table("nightfold_raw", ["o"])
        have = len(store.region_starts("nightfold_raw")) + 1
        first = store.probe_keys("nightfold_raw", day_ranges(day, SALT_BUCKETS)[0], 1)
        if marker.exists() and have == regions and first:
            log(f"seed: {url.split('?')[-1]} holds {rows:,} rows of {day}, {have} regions (cached)")
            return {"rows": rows, "regions": have, "cached": True}
        if have == regions and first and count_day_rows(store, day) == rows:
            # seeded before, but the marker was never written (the count failed, say)
            marker.write_text(json.dumps({"rows": rows, "regions": have}))
            log(f"seed: {url.split('?')[-1]} holds {rows:,} rows of {day} (counted)")
            return {"rows": rows, "regions": have, "cached": True}
        log(f"seed: (re)creating the raw table of {url.split('?')[-1]} with {regions} regions")
        marker.unlink(missing_ok=True)
        store.drop_table("nightfold_raw")
        log(f"seed: writing {rows:,} rows of {day} (about {rows / 17000:.0f} s)")
        started = time.monotonic()
        n = seed_day(store, day, rows, salt_buckets=SALT_BUCKETS, seed=1, regions=regions)
        took = time.monotonic() - started
        assert count_day_rows(store, day) == rows, "seeded count differs"
        have = len(store.region_starts("nightfold_raw")) + 1
        log(f"seed: {n:,} rows in {took:.0f} s ({n / took:,.0f} rows/s), {have} regions")
        WORK.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"rows": rows, "regions": have, "seed_s": round(took, 1)}))
        return {"rows": rows, "regions": have, "cached": False, "seed_s": round(took, 1)}
    finally:
        store.close()


def ensure_embedded_store(rows: int, day: dt.date = DAY) -> Path:
    """A local (embedded) store file holding ``rows`` rows of ``day``, seeded once."""
    from nightfold.common.store.local import LocalStore

    path = WORK / f"embedded-{day:%Y%m%d}-{rows}-r{REGIONS}.sqlite"
    done = path.with_suffix(".seeded")
    if path.exists() and done.exists():
        return path
    from nightfold.ops.seeding import seed_day

    path.unlink(missing_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    store = LocalStore(path)
    try:
        started = time.monotonic()
        seed_day(store, day, rows, salt_buckets=SALT_BUCKETS, seed=1, regions=REGIONS)
        log(f"embedded store: {rows:,} rows in {time.monotonic() - started:.0f} s")
    finally:
        store.close()
    done.write_text(str(rows))
    return path


def clear_outputs(
    url: str,
    job: str = "merchant_daily",
    day: dt.date = DAY,
    *,
    generation: int = 1,
    summary_table: str = "nightfold_summary",
) -> None:
    """Delete a day's partials (of ``generation``) and summaries, so a new run starts clean.

    Every benchmark run uses a fresh database, so its run is generation 1 and
    writes its partials at the same keys as the previous run's: left there, a
    run with fewer chunks would reduce stale ones too. (Celery's chord writes at
    a generation and summary table of its own: ``bench.celery_app``.)
    """
    from nightfold.common.keys import (
        PARTIAL_FAMILY,
        PARTIALS_TABLE,
        SEP,
        day_token,
        partial_prefix,
        prefix_range,
    )
    from nightfold.common.store import open_store

    store = open_store(url)
    try:
        store.ensure_table(PARTIALS_TABLE, [PARTIAL_FAMILY])
        store.ensure_table(summary_table, ["s"])
        store.delete_range(PARTIALS_TABLE, prefix_range(partial_prefix(job, day, generation)))
        store.delete_range(summary_table, prefix_range(day_token(day) + SEP))
    finally:
        store.close()


def summaries_digest(summaries: dict[str, dict[bytes, bytes]]) -> str:
    """One hash over every summary cell: equal digests, byte-identical summaries."""
    h = hashlib.sha256()
    for group in sorted(summaries):
        for name in sorted(summaries[group]):
            h.update(b"%s\x00%s\x00%s\x01" % (group.encode(), name, summaries[group][name]))
    return h.hexdigest()


def stored_digest(url: str, table: str = "nightfold_summary", day: dt.date = DAY) -> str:
    """The digest of a day's summaries as stored in ``table``."""
    from nightfold.common.jobs import get_job
    from nightfold.common.store import open_store
    from nightfold.ops.verify import read_stored

    job = get_job("merchant_daily")

    class _Job:  # read_stored reads job.summary_table and job.summary_family only
        summary_table = table
        summary_family = job.summary_family

    store = open_store(url)
    try:
        return summaries_digest(read_stored(store, _Job(), day))  # type: ignore[arg-type]
    finally:
        store.close()


def expected_digest(rows: int = ROWS) -> str:
    """The oracle's digest of the seeded day: from the bare loop's cache, else one bare run."""
    cache = WORK / f"expected-{DAY:%Y%m%d}-{rows}.json"
    if cache.exists():
        return str(json.loads(cache.read_text())["digest"])
    from bench.bare import run_bare_process

    result = run_bare_process(store_url())
    return str(result["digest"])


def remember_expected(digest: str, rows: int = ROWS) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"expected-{DAY:%Y%m%d}-{rows}.json"
    path.write_text(json.dumps({"digest": digest}))


# -- processes and memory ------------------------------------------------------------------


def clean_env(**nightfold: str) -> dict[str, str]:
    """This environment without any NIGHTFOLD_* variable, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({f"NIGHTFOLD_{k.upper()}": str(v) for k, v in nightfold.items()})
    return env


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wait_rusage(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for ``proc`` and return (exit code, its peak RSS in MiB from wait4)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            return code, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"process {proc.args!r} still running after {timeout:.0f}s")
        time.sleep(0.02)


# -- pairing and results ---------------------------------------------------------------------


def interleaved(variants: Sequence[str], reps: int = REPS) -> list[tuple[int, str]]:
    """(rep, variant) in the order A B A B ..., alternating which goes first each rep."""
    order: list[tuple[int, str]] = []
    for rep in range(reps):
        names = list(variants) if rep % 2 == 0 else list(reversed(variants))
        order += [(rep, v) for v in names]
    return order


def paired_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(num, den, strict=True)]


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def git_dirty() -> bool:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return bool(out.strip())


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg_1m_at_start": round(load[0], 2)}


def write_result(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` with the commit and the machine's load."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "commit": git_commit(), "dirty": git_dirty(), **data}
    doc.setdefault("machine", machine())
    doc["written_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    log(f"wrote {path.relative_to(REPO)}")
    return path


def read_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
