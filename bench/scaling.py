"""2. Scaling: one against two worker processes, interleaved, on the real services
(MariaDB, RabbitMQ, HBase; the seeded day) and on the embedded backends
(SQLite, the local store, database polling; a quarter of the rows, seeded once
into a local store file). The figure is the median of the paired speed-ups.

    python -m bench.scaling
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    REPS,
    ROWS,
    WORK,
    ensure_embedded_store,
    ensure_seeded,
    expected_digest,
    fresh_sqlite,
    interleaved,
    log,
    median,
    paired_ratios,
    write_result,
)
from bench.runner import NightfoldRun, run_nightfold, run_nightfold_hbase

EMBEDDED_ROWS = max(ROWS // 4, 10_000)
WORKER_COUNTS = ("1", "2")


def _embedded_run(label: str, workers: int, store_path: Any) -> NightfoldRun:
    from nightfold.common.keys import PARTIALS_TABLE
    from nightfold.common.store.local import LocalStore

    store = LocalStore(store_path)
    try:  # a fresh database means generation 1 again: drop the last run's outputs
        store.drop_table(PARTIALS_TABLE)
        store.drop_table("nightfold_summary")
    finally:
        store.close()
    with fresh_sqlite(WORK / "embedded-db") as db_url:
        return run_nightfold(
            label, workers=workers, db_url=db_url, broker="db://", store=f"local://{store_path}"
        )


def _series(runs: dict[str, list[NightfoldRun]]) -> dict[str, Any]:
    one, two = runs["1"], runs["2"]
    speedups = paired_ratios([r.wall_s for r in one], [r.wall_s for r in two])
    return {
        "speedup": round(median(speedups), 3),
        "pair_speedups": [round(s, 3) for s in speedups],
        "rows_per_s": {k: round(median([r.rows_per_s for r in v])) for k, v in runs.items()},
        "runs": {k: [r.asdict() for r in v] for k, v in runs.items()},
        "timeline_2_workers": two[0].timeline,
    }


def run(reps: int = REPS) -> dict[str, Any]:
    ensure_seeded()
    hbase: dict[str, list[NightfoldRun]] = {k: [] for k in WORKER_COUNTS}
    for rep, workers in interleaved(WORKER_COUNTS, reps):
        r = run_nightfold_hbase(f"scaling-hbase-{workers}w-{rep}", workers=int(workers))
        log(f"scaling hbase rep {rep}: {workers} worker(s) {r.wall_s:.1f} s")
        hbase[workers].append(r)
    store_path = ensure_embedded_store(EMBEDDED_ROWS)
    embedded: dict[str, list[NightfoldRun]] = {k: [] for k in WORKER_COUNTS}
    for rep, workers in interleaved(WORKER_COUNTS, reps):
        r = _embedded_run(f"scaling-embedded-{workers}w-{rep}", int(workers), store_path)
        log(f"scaling embedded rep {rep}: {workers} worker(s) {r.wall_s:.1f} s")
        embedded[workers].append(r)
    hb, em = _series(hbase), _series(embedded)
    digests = {r.digest for v in hbase.values() for r in v}
    result = {
        "rows": ROWS,
        "embedded_rows": EMBEDDED_ROWS,
        "reps": reps,
        "speedup_2_workers": hb["speedup"],
        "speedup_2_workers_embedded": em["speedup"],
        "exact": digests == {expected_digest()},
        "hbase": hb,
        "embedded": em,
    }
    write_result("scaling", result)
    return result


if __name__ == "__main__":
    run()
