"""8. A hot merchant (issue 16): a day where one merchant has millions of distinct
customers and hundreds of thousands of products, against a uniform day of the
same row count, each run by a master and 2 worker processes on the real services.

- ``hot_worker_peak_rss_mib``: every worker's peak RSS (VmHWM) on the hot day,
  against ``uniform_worker_peak_rss_mib`` on the uniform day (targets: <= 256 MiB
  and <= 1.5x the uniform peak);
- ``hot_wall_ratio``: the hot day's wall over the uniform day's, median of the
  interleaved pairs (target <= 1.3); and what sharding costs a uniform day,
  ``shard_cost_uniform_wall_ratio`` (merchant_daily against the same job unsharded,
  ``bench.hotjobs``, interleaved too), and the hot day unsharded ("before"): its
  workers' peak RSS and whether its summaries are the same bytes;
- ``hot_exact``: ``verify`` of merchant_daily on the hot day (byte-identical to a
  one-process recomputation), and the hot merchant's exact distinct customers;
- ``sketch_within_bounds``: the sketched example (``examples/merchant_sketch``)
  run on the hot day, verified (exact fields identical, sketched ones within
  their stored bounds), with the hot merchant's estimate and its relative error.

Both days are seeded once with ``nightfold seed``'s generator (the hot one with
``--hot-share/--hot-customers/--hot-products``, so anyone can reproduce it) into
the bench's table prefix, and reused while their row counts match.

    python -m bench.hot                       # full sizes (the committed figures)
    NIGHTFOLD_BENCH_HOT_QUICK=1 python -m bench.hot   # a small day, for development
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from typing import Any

from bench.common import (
    REPO,
    REPS,
    SALT_BUCKETS,
    WORK,
    clear_outputs,
    count_day_rows,
    fresh_mariadb,
    fresh_queue,
    fresh_sqlite,
    interleaved,
    log,
    median,
    paired_ratios,
    store_url,
    stored_digest,
    write_result,
)
from bench.runner import NightfoldRun, run_nightfold

QUICK = os.environ.get("NIGHTFOLD_BENCH_HOT_QUICK") == "1"
EMBEDDED = os.environ.get("NIGHTFOLD_BENCH_HOT_BACKEND") == "embedded"
"""Run on the embedded backends (SQLite, local store, db://) instead of the real services:
for development when the shared services are busy or down; never the committed figures."""
UNIFORM_DAY = dt.date(2026, 11, 18)
HOT_DAY = dt.date(2026, 11, 19)
SIZES: dict[str, int | float] = (
    {"rows": 300_000, "hot_share": 0.8, "hot_customers": 220_000, "hot_products": 22_000}
    if QUICK
    else {"rows": 4_000_000, "hot_share": 0.8, "hot_customers": 3_100_000, "hot_products": 300_000}
)
"""The hot day: ``rows`` orders, ``hot_share`` of them (3.2M in full) to one merchant
from ``hot_customers`` ids over ``hot_products`` products: about 3,085,000 distinct
customers once the 0.5 % malformed rows are set aside, and every product."""
WORKERS = 2
RSS_TARGET_MIB = 256
RSS_RATIO_TARGET = 1.5
WALL_RATIO_TARGET = 1.3
EXAMPLE = REPO / "examples" / "merchant_sketch"


def _seed_kw(day: dt.date) -> dict[str, Any]:
    if day == UNIFORM_DAY:
        return {}
    return {k: SIZES[k] for k in ("hot_share", "hot_customers", "hot_products")}


def ensure_day(url: str, day: dt.date) -> dict[str, Any]:
    """Seed ``day`` once (uniform or hot); reused while its row count and parameters match."""
    from nightfold.common.errors import ServiceUnavailable
    from nightfold.common.keys import day_ranges
    from nightfold.common.store import open_store
    from nightfold.ops.seeding import seed_day

    rows = int(SIZES["rows"])
    kw = _seed_kw(day)
    marker = WORK / f"hot-seed-{day:%Y%m%d}.json"
    want = json.dumps({"rows": rows, **kw}, sort_keys=True)
    store = open_store(url)
    try:
        store.ensure_table("nightfold_raw", ["o"])
        have = count_day_rows(store, day)
        if have == rows and marker.exists() and marker.read_text() == want:
            log(f"hot: {day} already holds {rows:,} rows {kw or '(uniform)'} (cached)")
            return {"rows": rows, "cached": True, **kw}
        for key_range in day_ranges(day, SALT_BUCKETS):
            store.delete_range("nightfold_raw", key_range)
        log(f"hot: seeding {rows:,} rows of {day} {kw or '(uniform)'}")
        started = time.monotonic()
        for attempt in (1, 2, 3):  # idempotent: a shared, loaded HBase may time out once
            try:
                seed_day(store, day, rows, salt_buckets=SALT_BUCKETS, seed=1, **kw)
                break
            except ServiceUnavailable as exc:
                if attempt == 3:
                    raise
                log(f"hot: seeding {day}: {exc}; again")
                time.sleep(10)
        took = time.monotonic() - started
        WORK.mkdir(parents=True, exist_ok=True)
        marker.write_text(want)
        log(f"hot: seeded {day} in {took:.0f} s ({rows / took:,.0f} rows/s)")
        return {"rows": rows, "cached": False, "seed_s": round(took, 1), **kw}
    finally:
        store.close()


TABLES = {
    "merchant_daily": "nightfold_summary",
    "merchant_sketch": "merchant_sketch_summary",
    "merchant_daily_unsharded": "nightfold_summary_unsharded",
}


def one_run(label: str, day: dt.date, url: str, **settings: Any) -> NightfoldRun:
    """A fresh database and queue, the day's earlier outputs removed, 2 workers and a master."""
    job = settings.get("job", "merchant_daily")
    table = TABLES[job]
    clear_outputs(url, job=job, day=day, summary_table=table)
    if EMBEDDED:
        with fresh_sqlite(WORK / "hot-embedded") as db_url:
            return run_nightfold(
                label,
                workers=WORKERS,
                db_url=db_url,
                broker="db://",
                store=url,
                day=day,
                settings=settings,
                timeout=3600,
            )
    with fresh_mariadb() as db_url, fresh_queue() as queue_url:
        return run_nightfold(
            label,
            workers=WORKERS,
            db_url=db_url,
            broker=queue_url,
            store=url,
            day=day,
            settings=settings,
            timeout=3600,
        )


def _example_site() -> str:
    """A PYTHONPATH under which worker processes find ``merchant_sketch`` by its entry
    point, as after ``pip install -e examples/merchant_sketch`` (what its tests do)."""
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = WORK / "hot-site"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines: list[str] = []
    for group, entries in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in entries.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return os.pathsep.join([str(site), str(EXAMPLE), str(REPO)])


def _hot_merchant(stored: dict[str, dict[bytes, bytes]]) -> str:
    """The merchant with the most orders."""
    return max(stored, key=lambda g: int(stored[g].get(b"s:orders", b"0")))


def verify_exact(url: str) -> dict[str, Any]:
    """merchant_daily on the hot day against the one-process oracle."""
    from nightfold.common.jobs import get_job
    from nightfold.common.store import open_store
    from nightfold.ops.verify import read_stored, verify_day

    store = open_store(url)
    try:
        started = time.monotonic()
        report = verify_day(store, get_job("merchant_daily"), HOT_DAY, SALT_BUCKETS)
        stored = read_stored(store, get_job("merchant_daily"), HOT_DAY)
        merchant = _hot_merchant(stored)
        hot = stored[merchant]
    finally:
        store.close()
    return {
        "hot_exact": report.ok,
        "differences": [str(d) for d in report.differences[:10]],
        "groups": report.groups_compared,
        "rows_read": report.rows_read,
        "hot_merchant": merchant,
        "hot_distinct_customers": int(hot.get(b"s:distinct_customers", b"0")),
        "hot_orders": int(hot.get(b"s:orders", b"0")),
        "verify_s": round(time.monotonic() - started, 1),
    }


def verify_sketch(url: str) -> dict[str, Any]:
    """The sketched example on the hot day: verify's verdict, and the hot merchant's
    distinct-customer estimate against the exact count."""
    sys.path.insert(0, str(EXAMPLE))
    from merchant_sketch.job import MerchantSketch

    from nightfold.common.store import open_store
    from nightfold.ops.verify import compute_expected, read_stored, verify_day

    job = MerchantSketch()
    store = open_store(url)
    try:
        report = verify_day(store, job, HOT_DAY, SALT_BUCKETS)
        every = read_stored(store, job, HOT_DAY)
        merchant = _hot_merchant(every)
        stored = every[merchant]
        exact = compute_expected(store, job, HOT_DAY, SALT_BUCKETS)[merchant]
    finally:
        store.close()
    estimate = int(stored.get(b"s:distinct_customers", b"0"))
    truth = int(exact.get(b"s:distinct_customers", b"0"))
    return {
        "sketch_within_bounds": report.ok,
        "sketch_differences": [str(d) for d in report.differences[:10]],
        "sketch_hot_distinct_estimate": estimate,
        "sketch_hot_distinct_bounds": json.loads(stored.get(b"s:distinct_customers_bounds", b"[]")),
        "sketch_hot_distinct_exact": truth,
        "sketch_hot_distinct_rel_error": round(abs(estimate - truth) / truth, 5) if truth else None,
        "sketch_hot_p95": {
            "stored": stored.get(b"s:p95_order_cents", b"").decode(),
            "bounds": json.loads(stored.get(b"s:p95_order_cents_bounds", b"[]")),
            "exact": exact.get(b"s:p95_order_cents", b"").decode(),
        },
    }


def run() -> dict[str, Any]:
    url = f"local://{WORK / 'hot-embedded-store.sqlite'}" if EMBEDDED else store_url()
    seeds = {str(day): ensure_day(url, day) for day in (UNIFORM_DAY, HOT_DAY)}
    runs: dict[str, list[NightfoldRun]] = {"uniform": [], "hot": [], "uniform_unsharded": []}
    for rep, variant in interleaved(list(runs), REPS):
        day = HOT_DAY if variant == "hot" else UNIFORM_DAY
        unsharded = {"job": "merchant_daily_unsharded", "job_modules": "bench.hotjobs"}
        r = one_run(
            f"hot-{variant}-{rep}", day, url, **(unsharded if "unsharded" in variant else {})
        )
        log(
            f"hot: {variant} rep {rep}: {r.wall_s:.1f} s, workers' peak RSS "
            f"{r.worker_peak_rss_mib} MiB (plan {r.plan_s:.1f} s, map {r.map_s:.1f} s, "
            f"reduce+combine {r.reduce_s:.1f} s)"
        )
        runs[variant].append(r)
    before = one_run(
        "hot-unsharded", HOT_DAY, url, job="merchant_daily_unsharded", job_modules="bench.hotjobs"
    )
    log(f"hot: unsharded (before issue 16): workers' peak RSS {before.worker_peak_rss_mib} MiB")
    exact = verify_exact(url)
    log(f"hot: verify merchant_daily on the hot day: {exact['hot_exact']} ({exact['verify_s']} s)")
    outer = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _example_site()  # the workers find the example's entry point
    try:
        sketch_run = one_run("hot-sketch", HOT_DAY, url, job="merchant_sketch")
    finally:
        if outer is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = outer
    sketch = verify_sketch(url)
    log(f"hot: sketched example within bounds: {sketch['sketch_within_bounds']}")

    hot_peak = max(max(r.worker_peak_rss_mib) for r in runs["hot"])
    uniform_peak = max(max(r.worker_peak_rss_mib) for r in runs["uniform"])
    walls = paired_ratios([r.wall_s for r in runs["hot"]], [r.wall_s for r in runs["uniform"]])
    costs = paired_ratios(
        [r.wall_s for r in runs["uniform"]], [r.wall_s for r in runs["uniform_unsharded"]]
    )
    result = {
        "quick": QUICK,
        "sizes": SIZES,
        "workers": WORKERS,
        "seeds": seeds,
        "hot_worker_peak_rss_mib": round(hot_peak, 1),
        "uniform_worker_peak_rss_mib": round(uniform_peak, 1),
        "hot_rss_ratio": round(hot_peak / uniform_peak, 3),
        "hot_wall_ratio": round(median(walls), 3),
        "hot_wall_ratios": [round(w, 3) for w in walls],
        "shard_cost_uniform_wall_ratio": round(median(costs), 3),
        "shard_cost_uniform_wall_ratios": [round(c, 3) for c in costs],
        **exact,
        **sketch,
        "hot_unsharded_worker_peak_rss_mib": max(before.worker_peak_rss_mib),
        "hot_unsharded_wall_s": round(before.wall_s, 1),
        "unsharded_summaries_identical": stored_digest(url, TABLES["merchant_daily"], HOT_DAY)
        == stored_digest(url, TABLES["merchant_daily_unsharded"], HOT_DAY),
        "sketch_run": sketch_run.asdict(),
        "sketch_worker_peak_rss_mib": max(sketch_run.worker_peak_rss_mib),
        "runs": {k: [r.asdict() for r in v] for k, v in runs.items()},
        "targets": {
            "rss_mib": RSS_TARGET_MIB,
            "rss_ratio": RSS_RATIO_TARGET,
            "wall_ratio": WALL_RATIO_TARGET,
        },
    }
    result["hot_rss_met"] = (
        hot_peak <= RSS_TARGET_MIB and result["hot_rss_ratio"] <= RSS_RATIO_TARGET
    )
    result["hot_wall_met"] = result["hot_wall_ratio"] <= WALL_RATIO_TARGET
    log(
        f"hot: workers' peak {hot_peak:.0f} MiB (uniform {uniform_peak:.0f} MiB, "
        f"{result['hot_rss_ratio']}x); wall ratio {result['hot_wall_ratio']}; "
        f"exact {exact['hot_exact']}; sketch within bounds {sketch['sketch_within_bounds']}"
    )
    result["backend"] = "embedded" if EMBEDDED else "real"
    name = "hot" + ("_embedded" if EMBEDDED else "") + ("_quick" if QUICK else "")
    write_result(name, result)
    return result


if __name__ == "__main__":
    run()
