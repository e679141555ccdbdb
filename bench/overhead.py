"""1. Framework overhead: the seeded day through nightfold with one worker against
the bare loop (``bench/bare.py``), interleaved; the ratio of wall times.

Also runs nightfold once more at 4x the default chunk size (memory, item 6),
and keeps the first run's chunk timeline for the plot.

    python -m bench.overhead
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    DEFAULT_CHUNK_ROWS,
    REPS,
    ROWS,
    ensure_seeded,
    interleaved,
    log,
    median,
    paired_ratios,
    store_url,
    write_result,
)
from bench.runner import run_nightfold_hbase

TARGET_RATIO = 1.05


def run(reps: int = REPS) -> dict[str, Any]:
    seed = ensure_seeded()
    nightfold: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    from bench.bare import run_bare_process

    # One unmeasured pass first: the first scan of the day after a restart or a seeding
    # runs against cold caches (measured: its chunks took 3.1 s falling to 1.4 s, the
    # warm ones 1.8 s), which would charge whichever variant happens to go first.
    warm = run_bare_process(store_url())
    log(f"overhead warm-up: bare {warm['wall_s']:.1f} s (not counted)")
    for rep, variant in interleaved(["nightfold", "bare"], reps):
        if variant == "bare":
            b = run_bare_process(store_url())
            log(f"overhead rep {rep}: bare {b['wall_s']:.1f} s ({b['rows']:,} rows)")
            bare.append(b)
        else:
            r = run_nightfold_hbase(f"overhead-{rep}", workers=1)
            log(
                f"overhead rep {rep}: nightfold {r.wall_s:.1f} s (plan {r.plan_s:.1f}, "
                f"map {r.map_s:.1f}, reduce {r.reduce_s:.1f}; {r.rows:,} rows)"
            )
            if not timeline:
                timeline = r.timeline
            nightfold.append(r.asdict())
    big = run_nightfold_hbase("overhead-4x", workers=1, chunk_rows=4 * DEFAULT_CHUNK_ROWS)
    log(f"overhead 4x chunks: nightfold {big.wall_s:.1f} s, worker {big.worker_peak_rss_mib} MiB")

    ratios = paired_ratios([r["wall_s"] for r in nightfold], [b["wall_s"] for b in bare])
    digests = {r["digest"] for r in nightfold} | {b["digest"] for b in bare} | {big.digest}
    ratio = median(ratios)
    plan_share = median([r["plan_s"] / r["wall_s"] for r in nightfold])
    result = {
        "rows": ROWS,
        "workers": 1,
        "chunk_rows": DEFAULT_CHUNK_ROWS,
        "reps": reps,
        "seed": seed,
        "overhead_ratio": round(ratio, 3),
        "pair_ratios": [round(x, 3) for x in ratios],
        "target": f"<= {TARGET_RATIO}",
        "met": ratio <= TARGET_RATIO,
        "plan_share_of_wall": round(plan_share, 3),
        "plan_share": round(plan_share, 4),
        "ratio_without_planning": round(
            median(
                paired_ratios(
                    [r["wall_s"] - r["plan_s"] for r in nightfold], [b["wall_s"] for b in bare]
                )
            ),
            3,
        ),
        "exact": len(digests) == 1,
        "nightfold_runs": nightfold,
        "bare_runs": bare,
        "run_4x_chunks": big.asdict(),
        "worker_peak_rss_mib": max(max(r["worker_peak_rss_mib"]) for r in nightfold),
        "worker_peak_rss_mib_4x_chunk": max(big.worker_peak_rss_mib),
        "timeline": timeline,
    }
    write_result("overhead", result)
    return result


if __name__ == "__main__":
    run()
