"""Skew: a day where one merchant holds 30% of the rows against a uniform day of
the same row count, two workers each, side by side (issue 15).

``skew_ratio`` = wall of the skewed day / wall of the uniform day (target <= 1.15),
and ``skew_longest_over_median``: the skewed run's longest map chunk over its
median one, in rows, after splitting (target <= 2); also in seconds
(``skew_longest_over_median_s``), and the same run with splitting off
(``skew_ratio_no_split``, ``skew_longest_over_median_no_split``) for what the
splits buy.

The skewed day is planned before its hot merchant's rows land (``tests.support.skew``):
a plan made from yesterday's cut points or from region boundaries misjudges the
chunks holding a hot merchant the same way, and that straggler is what run-time
splitting is for (a plan made by sampling the skewed day itself is balanced from
the start). Both days are timed from the workers' start to the master's exit, so
planning (which the skewed day does on fewer rows) is left out of both. The
skewed run's summaries are checked against the one-process oracle (``verify``).

    python -m bench.skew               # the issue's size: 2M rows (NIGHTFOLD_BENCH_ROWS)
    NIGHTFOLD_BENCH_QUICK=1 python -m bench.skew          # 200k rows, smaller chunks
    NIGHTFOLD_BENCH_BACKEND=embedded python -m bench.skew # SQLite + local store + db://
    NIGHTFOLD_BENCH_SKEW_SALT=2 python -m bench.skew      # 2 salt buckets: real stragglers
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.common import (
    ROWS,
    WORK,
    fresh_mariadb,
    fresh_queue,
    fresh_sqlite,
    interleaved,
    log,
    median,
    service_url,
    write_result,
)
from bench.runner import nightfold_env, nightfold_workers, run_facts, spawn_nightfold
from nightfold.common.db.engine import make_engine
from nightfold.common.db.models import Chunk, Run, RunEvent
from nightfold.common.keys import PARTIAL_FAMILY, PARTIALS_TABLE, SEP, day_token, prefix_range
from nightfold.common.store import open_store
from nightfold.common.store.base import Row, Store
from nightfold.common.urls import with_query
from nightfold.ops.seeding import generate_rows
from tests.support.pipeline import stop, wait_for
from tests.support.skew import skewed_in_two

QUICK = os.environ.get("NIGHTFOLD_BENCH_QUICK") == "1"
BACKEND = os.environ.get("NIGHTFOLD_BENCH_BACKEND", "real")
SKEW_ROWS = 200_000 if QUICK else ROWS
CHUNK_ROWS = 5_000 if QUICK else 50_000
SPLIT_MIN_ROWS = CHUNK_ROWS // 5
HOT_SHARE = 0.3
SALT_BUCKETS = int(os.environ.get("NIGHTFOLD_BENCH_SKEW_SALT", "16"))
"""Salt buckets of both days: with 16 (the default layout) the hot merchant's rows are
spread over 16 chunks; with fewer they gather in fewer, longer ones."""
WORKERS = 2
REPS = int(os.environ.get("NIGHTFOLD_BENCH_SKEW_REPS", "2"))
UNIFORM_DAY = dt.date(2026, 11, 25)
SKEW_DAY = dt.date(2026, 11, 26)
if SALT_BUCKETS != 16:  # other days: rows of one layout never mix with another's
    UNIFORM_DAY += dt.timedelta(days=10 * SALT_BUCKETS)
    SKEW_DAY += dt.timedelta(days=10 * SALT_BUCKETS)
PREFIX = "nfskew"
TARGET_RATIO = 1.15
TARGET_LONGEST = 2.0
VARIANTS = ("uniform", "skewed", "skewed_no_split")


def _store_url() -> str:
    if BACKEND == "embedded":
        WORK.mkdir(parents=True, exist_ok=True)
        return f"local://{WORK / f'skew-{SKEW_ROWS}.sqlite'}"
    return with_query(service_url("NIGHTFOLD_STORE_URL"), table_prefix=PREFIX)


@contextlib.contextmanager
def _services(label: str) -> Iterator[tuple[str, str]]:
    """A fresh database and queue (``db://`` and SQLite when embedded)."""
    if BACKEND == "embedded":
        with fresh_sqlite(WORK / "skew-db") as db_url:
            yield db_url, "db://"
        return
    with fresh_mariadb(label) as db_url, fresh_queue(f"nightfold.{label}") as queue:
        yield db_url, queue


def _put(url: str, rows: list[Row]) -> None:
    store = open_store(url)
    try:
        store.ensure_table("nightfold_raw", ["o"])
        store.put_many("nightfold_raw", rows)
    finally:
        store.close()


def _delete(store: Store, rows: list[Row]) -> None:
    store.delete_cells("nightfold_raw", [(key, None) for key, _ in rows])


def _clear_outputs(store: Store, day: dt.date) -> None:
    for table, family in ((PARTIALS_TABLE, PARTIAL_FAMILY), ("nightfold_summary", "s")):
        store.ensure_table(table, [family])
    store.delete_range(PARTIALS_TABLE, prefix_range(b"merchant_daily" + SEP + day_token(day)))
    store.delete_range("nightfold_summary", prefix_range(day_token(day) + SEP))


def _state(db_url: str) -> str | None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Run.state).order_by(Run.id.desc()).limit(1)).scalar()
    finally:
        engine.dispose()


def _chunks(db_url: str) -> dict[str, Any]:
    """The run's done map chunks (rows, seconds of their last attempt) and its splits."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Chunk.rows_read, Chunk.claimed_at, Chunk.done_at).where(
                    Chunk.stage == "map", Chunk.state == "done"
                )
            ).all()
            splits = len(conn.execute(select(RunEvent.id).where(RunEvent.kind == "split")).all())
            run_rows = conn.execute(select(Run.rows_read).order_by(Run.id.desc())).scalar()
    finally:
        engine.dispose()
    from nightfold.common.db.clock import seconds_between

    sizes = [int(r.rows_read) for r in rows]
    secs = [seconds_between(r.claimed_at, r.done_at) or 0.0 for r in rows]
    return {
        "map_chunks": len(sizes),
        "splits": splits,
        "rows": int(run_rows or 0),
        "longest_over_median": round(max(sizes) / statistics.median(sizes), 2),
        "longest_over_median_s": round(max(secs) / max(1e-9, statistics.median(secs)), 2),
        "chunk_rows_max": max(sizes),
        "chunk_rows_median": statistics.median(sizes),
    }


def _one(variant: str, rep: int, url: str, late: list[Row]) -> dict[str, Any]:
    day = UNIFORM_DAY if variant == "uniform" else SKEW_DAY
    label = f"skew-{variant}-{rep}"
    store = open_store(url)
    try:
        _clear_outputs(store, day)
        if variant != "uniform":
            _delete(store, late)  # the plan must not see the hot merchant
    finally:
        store.close()
    settings: dict[str, Any] = {
        "chunk_rows": CHUNK_ROWS,
        "salt_buckets": SALT_BUCKETS,
        "split_min_rows": SPLIT_MIN_ROWS if variant != "skewed_no_split" else 10**9,
    }
    logs = WORK / "logs" / label
    with _services("sk") as (db_url, broker):
        env = nightfold_env(db_url, broker, url, **settings)
        master = spawn_nightfold(env, logs, "master", "master", "run", "--day", day.isoformat())
        try:
            wait_for(lambda: _state(db_url) == "mapping", 600, f"{label}: the plan")
            if variant != "uniform":
                _put(url, late)
            with nightfold_workers(env, logs, WORKERS, db_url):
                started = time.monotonic()
                code = master.wait(timeout=3600)
                wall = time.monotonic() - started
        finally:
            stop([master])
        if code != 0:
            raise RuntimeError(f"{label}: master exited {code}; see {logs}/master.log")
        facts = _chunks(db_url)
        stages = run_facts(db_url)
        facts["map_s"] = round(stages["map_s"], 2)
        facts["reduce_s"] = round(stages["reduce_s"], 2)
        if variant == "skewed" and rep == 0:
            facts["verify"] = _verify(env, day, logs)
    log(
        f"{label}: {wall:.1f} s (map {facts['map_s']} s, reduce {facts['reduce_s']} s), "
        f"{facts['map_chunks']} map chunks ({facts['splits']} splits), "
        f"longest/median {facts['longest_over_median']} rows, "
        f"{facts['longest_over_median_s']} s"
    )
    return {"variant": variant, "rep": rep, "wall_s": round(wall, 2), **facts}


def _verify(env: dict[str, str], day: dt.date, logs: Path) -> bool:
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "nightfold", "verify", "--day", day.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    (logs / "verify.log").write_text(res.stdout + res.stderr)
    return res.returncode == 0 and "OK" in res.stdout


def run() -> dict[str, Any]:
    url = _store_url()
    log(f"skew: {SKEW_ROWS:,} rows, {BACKEND} backends, chunk_rows {CHUNK_ROWS:,}")
    uniform = list(generate_rows(UNIFORM_DAY, SKEW_ROWS, salt_buckets=SALT_BUCKETS))
    _put(url, uniform)
    del uniform
    early, late = skewed_in_two(SKEW_DAY, SKEW_ROWS, salt_buckets=SALT_BUCKETS, hot_share=HOT_SHARE)
    _put(url, early)
    del early
    runs: list[dict[str, Any]] = []
    for rep, variant in interleaved(VARIANTS, REPS):
        runs.append(_one(variant, rep, url, late))
    _put(url, late)  # leave the skewed day whole
    walls = {v: [r["wall_s"] for r in runs if r["variant"] == v] for v in VARIANTS}
    skewed = [r for r in runs if r["variant"] == "skewed"]
    no_split = [r for r in runs if r["variant"] == "skewed_no_split"]
    ratio = median(walls["skewed"]) / median(walls["uniform"])
    longest = max(r["longest_over_median"] for r in skewed)
    result = {
        "skew_ratio": round(ratio, 3),
        "skew_longest_over_median": longest,
        "skew_longest_over_median_s": max(r["longest_over_median_s"] for r in skewed),
        "skew_ratio_no_split": round(
            median(walls["skewed_no_split"]) / median(walls["uniform"]), 3
        ),
        "skew_longest_over_median_no_split": max(r["longest_over_median"] for r in no_split),
        "skew_splits": [r["splits"] for r in skewed],
        "skew_map_ratio": round(
            median([r["map_s"] for r in skewed])
            / median([r["map_s"] for r in runs if r["variant"] == "uniform"]),
            3,
        ),
        "skew_reduce_ratio": round(
            median([r["reduce_s"] for r in skewed])
            / median([r["reduce_s"] for r in runs if r["variant"] == "uniform"]),
            3,
        ),
        "skew_exact": all(r.get("verify", True) for r in skewed),
        "skew_rows_counted": {r["variant"]: r["rows"] for r in runs},
        "targets": {"skew_ratio": TARGET_RATIO, "skew_longest_over_median": TARGET_LONGEST},
        "met": ratio <= TARGET_RATIO and longest <= TARGET_LONGEST,
        "rows": SKEW_ROWS,
        "hot_share": HOT_SHARE,
        "workers": WORKERS,
        "chunk_rows": CHUNK_ROWS,
        "split_min_rows": SPLIT_MIN_ROWS,
        "salt_buckets": SALT_BUCKETS,
        "backend": BACKEND,
        "quick": QUICK,
        "runs": runs,
    }
    write_result("skew" if SALT_BUCKETS == 16 else f"skew_salt{SALT_BUCKETS}", result)
    log(
        f"skew_ratio {result['skew_ratio']} (no split {result['skew_ratio_no_split']}), "
        f"longest/median {longest} (no split {result['skew_longest_over_median_no_split']})"
    )
    return result


if __name__ == "__main__":
    run()
