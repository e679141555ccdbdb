"""The bare loop: what one engineer would write without nightfold.

One process scans the day's key ranges from HBase with plain happybase
(``scan``, same scanner batch as nightfold's ``scan_batch``), folds each batch
with the same job's ``map_rows``, finalizes every merchant and writes the
summaries to a table of its own. No planning, no chunks, no partials, no
coordination: the floor nightfold's framework overhead is measured against.

    python -m bench.bare [--store-url hbase://...?table_prefix=nfbench]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import happybase

from bench.common import (
    DAY,
    SALT_BUCKETS,
    WORK,
    clean_env,
    remember_expected,
    store_url,
    summaries_digest,
    wait_rusage,
)
from nightfold.common.jobs.base import MapOutput, fold_rows
from nightfold.common.keys import SEP, day_ranges, day_token
from nightfold.common.store import HBaseURL, parse_store_url
from nightfold.jobs.merchant_daily import MerchantDaily

SCAN_BATCH = 1000
BARE_SUMMARY_TABLE = "bare_summary"


def bare_loop(url: str) -> dict[str, Any]:
    spec = parse_store_url(url)
    assert isinstance(spec, HBaseURL)
    conn = happybase.Connection(spec.host, spec.port, table_prefix=spec.table_prefix)
    job = MerchantDaily()
    out: MapOutput[Any] = MapOutput()
    raw = conn.table(job.raw_table)
    for key_range in day_ranges(DAY, SALT_BUCKETS):
        rows = raw.scan(row_start=key_range.start, row_stop=key_range.end, batch_size=SCAN_BATCH)
        fold_rows(job, rows, out, SCAN_BATCH)
    summaries = {g: job.finalize(g, out.partials[g]) for g in sorted(out.partials)}
    if BARE_SUMMARY_TABLE.encode() not in conn.tables():
        conn.create_table(BARE_SUMMARY_TABLE, {"s": {"max_versions": 1}})
    with conn.table(BARE_SUMMARY_TABLE).batch(batch_size=1000) as b:
        prefix = day_token(DAY) + SEP
        for group, cells in summaries.items():
            b.put(prefix + group.encode(), cells)
    conn.close()
    return {
        "rows": out.rows_read,
        "malformed": out.rows_malformed,
        "groups": len(summaries),
        "digest": summaries_digest(summaries),
    }


def run_bare_process(url: str) -> dict[str, Any]:
    """Run the bare loop as its own process; wall time from spawn to exit, peak RSS."""
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / "bare-output.json"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare", "--store-url", url, "--out", str(out)],
        env=clean_env(),
    )
    code, rss = wait_rusage(proc, 900)
    wall = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"bare loop exited {code}")
    result = json.loads(out.read_text())
    remember_expected(result["digest"], result["rows"])
    return {**result, "wall_s": wall, "peak_rss_mib": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-url", default=None)
    parser.add_argument("--out", default=None, help="write the result JSON here")
    args = parser.parse_args()
    result = bare_loop(args.store_url or store_url())
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
