"""7. Profile of the worker's hot path on the overhead benchmark's data.

Runs the worker's map step (``worker.executor.run_map``: scan, fold, encode and
write partials) over the first ``CHUNKS`` chunks of the seeded day, in this
process, under pyinstrument; writes the profile as text and the share of
time spent in our code against the libraries (happybase, thriftpy2, ...).

    python -m bench.profile
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Any

from bench.common import (
    DAY,
    DEFAULT_CHUNK_ROWS,
    REPO,
    RESULTS,
    SALT_BUCKETS,
    ensure_seeded,
    log,
    store_url,
    write_result,
)
from bench.runner import NoLease, NoRecords, synthetic_claim

CHUNKS = int(os.environ.get("NIGHTFOLD_BENCH_PROFILE_CHUNKS", "6"))
PROFILE_GENERATION = 8
"""The profiled map writes its partials at generation 8 of the day (apart from real runs)."""


def _claims(store: Any, chunks: int) -> list[Any]:
    """The day's first ``chunks`` map chunks, cut as the planner does (first two salts)."""
    from nightfold.common.keys import day_ranges
    from nightfold.common.states import Stage
    from nightfold.master.planner import plan_map

    ranges = day_ranges(DAY, SALT_BUCKETS)[:3]
    mapped = plan_map(store, "nightfold_raw", ranges, DEFAULT_CHUNK_ROWS)
    cut = [c.range for c in mapped.chunks][:chunks]
    return [
        synthetic_claim(Stage.MAP, i, r, generation=PROFILE_GENERATION, owner="profile")
        for i, r in enumerate(cut)
    ]


def _package(path: str) -> str:
    if not path:
        return "other"
    for name in ("happybase", "thriftpy2", "sqlalchemy", "pymysql", "json"):
        if f"/{name}/" in path or path.endswith(f"/{name}.py"):
            return name
    if path.startswith(str(REPO)) and "/.venv/" not in path:
        return "nightfold (ours)"
    if "site-packages" in path:
        return "other libraries"
    return "python stdlib / builtins"


def _self_times(session: Any) -> list[tuple[str, str, float]]:
    """(function, file, seconds) of every leaf of the call tree: pyinstrument keeps a
    frame's own time in a synthetic ``[self]`` leaf, charged here to that frame."""
    leaves: list[tuple[str, str, float]] = []
    stack = [session.root_frame()]
    while stack:
        frame = stack.pop()
        if frame.children:
            stack.extend(frame.children)
            continue
        owner = frame.parent if frame.is_synthetic_leaf and frame.parent else frame
        path = owner.file_path or ""
        leaves.append((owner.function or "?", path, frame.time))
    return leaves


def _shares(session: Any) -> dict[str, float]:
    """Self time per package, as shares of the profiled time."""
    totals: dict[str, float] = defaultdict(float)
    for _, path, seconds in _self_times(session):
        totals[_package(path)] += seconds
    whole = sum(totals.values()) or 1.0
    return {k: round(v / whole, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def _top_self(session: Any, n: int = 15) -> list[dict[str, Any]]:
    """The functions with the most self time (where the time really goes)."""
    by_function: dict[tuple[str, str], float] = defaultdict(float)
    for function, path, seconds in _self_times(session):
        short = path.split("site-packages/")[-1].replace(str(REPO) + "/", "")
        by_function[(function, short)] += seconds
    whole = sum(by_function.values()) or 1.0
    top = sorted(by_function.items(), key=lambda kv: -kv[1])[:n]
    return [{"function": f, "file": p, "share": round(t / whole, 3)} for (f, p), t in top]


def run() -> dict[str, Any]:
    from pyinstrument import Profiler

    from nightfold.common.jobs import get_job
    from nightfold.common.keys import PARTIAL_FAMILY, PARTIALS_TABLE
    from nightfold.common.store import open_store
    from nightfold.worker.executor import run_map

    ensure_seeded()
    store = open_store(store_url())
    store.ensure_table(PARTIALS_TABLE, [PARTIAL_FAMILY])
    job = get_job("merchant_daily")
    claims = _claims(store, CHUNKS)
    run_map(claims[0], store, job, NoLease(), NoRecords())  # warm up
    profiler = Profiler(interval=0.001)
    rows = 0
    started = time.perf_counter()
    profiler.start()
    for claim in claims:
        rows += run_map(claim, store, job, NoLease(), NoRecords()).rows_read
    profiler.stop()
    seconds = time.perf_counter() - started
    store.close()
    session = profiler.last_session
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    (RESULTS / "profile_worker.txt").write_text(text)
    result = {
        "chunks": len(claims),
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "self_time_share": _shares(session),
        "top_self_time": _top_self(session),
        "profile_text": "bench/results/profile_worker.txt",
    }
    log(f"profile: {rows:,} rows in {seconds:.1f} s; shares {result['self_time_share']}")
    write_result("profile", result)
    return result


if __name__ == "__main__":
    run()
