"""6. Memory: peak RSS (the kernel's VmHWM / wait4's ru_maxrss) of

- one worker during the overhead run, at the default chunk size and at 4x it
  (measured by ``bench.overhead``: one worker process folds the whole day);
- the master while it plans, records and publishes 100k chunks (measured by
  ``bench.coordinator`` in its dispatch child process).

Run alone, it measures what those two have not written yet.

    python -m bench.memory
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    DEFAULT_CHUNK_ROWS,
    ROWS,
    ensure_seeded,
    log,
    read_result,
    write_result,
)
from bench.runner import run_nightfold_hbase

WORKER_TARGET_MIB = 256
MASTER_TARGET_MIB = 200


def _worker_figures() -> dict[str, Any]:
    overhead = read_result("overhead")
    if overhead and overhead.get("rows") == ROWS:
        return {
            "worker_peak_rss_mib": overhead["worker_peak_rss_mib"],
            "worker_peak_rss_mib_4x_chunk": overhead["worker_peak_rss_mib_4x_chunk"],
            "source": "overhead.json",
        }
    ensure_seeded()
    one = run_nightfold_hbase("memory-1x", workers=1)
    four = run_nightfold_hbase("memory-4x", workers=1, chunk_rows=4 * DEFAULT_CHUNK_ROWS)
    return {
        "worker_peak_rss_mib": max(one.worker_peak_rss_mib),
        "worker_peak_rss_mib_4x_chunk": max(four.worker_peak_rss_mib),
        "source": "measured here",
    }


def _master_figures() -> dict[str, Any]:
    coordinator = read_result("coordinator")
    if coordinator is None:
        from bench import coordinator as coord

        coordinator = coord.run()
    dispatch = coordinator["dispatch"]
    return {
        "master_peak_rss_mib": coordinator["master_peak_rss_mib"],
        "master_rss_before_plan_mib": dispatch["rss_before_mib"],
        "master_chunks": dispatch["chunks"],
    }


def run() -> dict[str, Any]:
    worker = _worker_figures()
    master = _master_figures()
    result = {
        "rows": ROWS,
        "chunk_rows": DEFAULT_CHUNK_ROWS,
        **worker,
        **master,
        "worker_target_mib": WORKER_TARGET_MIB,
        "master_target_mib": MASTER_TARGET_MIB,
        "worker_met": max(worker["worker_peak_rss_mib"], worker["worker_peak_rss_mib_4x_chunk"])
        <= WORKER_TARGET_MIB,
        "master_met": master["master_peak_rss_mib"] <= MASTER_TARGET_MIB,
    }
    log(
        f"memory: worker {result['worker_peak_rss_mib']} MiB (4x chunk "
        f"{result['worker_peak_rss_mib_4x_chunk']} MiB), master {result['master_peak_rss_mib']} "
        f"MiB for {master['master_chunks']:,} chunks"
    )
    write_result("memory", result)
    return result


if __name__ == "__main__":
    run()
