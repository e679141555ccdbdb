"""Mid-chunk resume: a worker SIGKILLed at about 90% of a chunk of at least 500k
rows; rows re-read by the taker over the chunk's rows (``resume_redo_fraction``,
target <= 0.15), with the checkpoint interval it was measured at (issue 15).

One salt bucket and a ``chunk_rows`` above the day's rows make the day one map
chunk -- or one per HBase region, if the table has split (chunks never straddle a
region): the victim then takes chunk 0 (a window of one chunk in flight), and the
kill comes at 90% of that chunk's rows, counted keys-only after planning.
Splitting is off, so the chunk stays whole. The victim runs the
``paced_daily`` job (``tests.support.jobs``: merchant_daily that SIGKILLs its own
process once it has folded ``NIGHTFOLD_TEST_DIE_AFTER_ROWS`` rows -- nothing
after it runs, as with a kill from outside, and the point of the kill is known to
the row). A second worker then takes the chunk over (after
``worker_dead_seconds``) and resumes it after the last committed segment.

    re-read = rows the victim had read - rows its committed segments hold
            = rows the taker read - (chunk rows - rows the victim had read)

both read from the database (segments by attempt) and checked to agree. The same
run without checkpoints (``checkpoint_rows`` above the chunk) gives the figure
before this change (``resume_redo_fraction_no_checkpoint``). The summaries are
checked against the one-process oracle.

    python -m bench.resume                 # 600k rows (a chunk of at least 500k)
    NIGHTFOLD_BENCH_QUICK=1 python -m bench.resume           # 100k rows
    NIGHTFOLD_BENCH_BACKEND=embedded python -m bench.resume  # SQLite + local store + db://
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import func, select

from bench.common import WORK, log, write_result
from bench.runner import nightfold_env, spawn_nightfold, workers_registered
from bench.skew import BACKEND, PREFIX, QUICK, _clear_outputs, _put, _services, _state, _store_url
from nightfold.common.db.engine import make_engine
from nightfold.common.db.models import Chunk, Segment
from nightfold.common.keys import KeyRange
from nightfold.common.params import RunParams
from nightfold.common.store import open_store
from nightfold.ops.seeding import generate_rows
from tests.support.pipeline import stop, wait_for

DAY = dt.date(2026, 11, 27)
CHUNK = 100_000 if QUICK else 600_000
KILL_AT = 0.9
CHECKPOINT_ROWS = 10_000 if QUICK else RunParams.checkpoint_rows
"""The default interval at the issue's size; a tenth of the quick chunk in quick mode."""
TARGET = 0.15


def _segments(db_url: str) -> dict[int, tuple[int, int]]:
    """Per attempt: (segments, rows) committed of map chunk 0."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Segment.attempt, func.count(), func.sum(Segment.rows_read))
                .where(Segment.chunk_idx == 0)
                .group_by(Segment.attempt)
            ).all()
    finally:
        engine.dispose()
    return {int(a): (int(n), int(r)) for a, n, r in rows}


def _chunk0_rows(db_url: str, url: str) -> tuple[int, int]:
    """(rows of map chunk 0, map chunks planned), the rows by a keys-only count."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            start, end = conn.execute(
                select(Chunk.start_key, Chunk.end_key).where(Chunk.stage == "map", Chunk.idx == 0)
            ).one()
            chunks = conn.execute(select(func.count()).where(Chunk.stage == "map")).scalar_one()
    finally:
        engine.dispose()
    store = open_store(url)
    try:
        scan = store.scan(
            "nightfold_raw", KeyRange(bytes(start), bytes(end)), keys_only=True, batch_size=5000
        )
        return sum(1 for _ in scan), int(chunks)
    finally:
        store.close()


def _one(label: str, url: str, checkpoint_rows: int, checkpoint_seconds: float) -> dict[str, Any]:
    store = open_store(url)
    try:
        _clear_outputs(store, DAY)
    finally:
        store.close()
    logs = WORK / "logs" / label
    settings = {
        "chunk_rows": CHUNK * 10,
        "salt_buckets": 1,
        "split_min_rows": 10**9,
        "max_in_flight": 1,
        "checkpoint_rows": checkpoint_rows,
        "checkpoint_seconds": checkpoint_seconds,
        "job": "paced_daily",
        "job_modules": "tests.support.jobs",
    }
    with _services("rs") as (db_url, broker):
        env = nightfold_env(db_url, broker, url, **settings)
        master = spawn_nightfold(env, logs, "master", "master", "run", "--day", DAY.isoformat())
        procs = [master]
        try:
            wait_for(lambda: _state(db_url) == "mapping", 600, f"{label}: the plan")
            planned, chunks = _chunk0_rows(db_url, url)
            die_at = int(planned * KILL_AT)
            victim = spawn_nightfold(
                {**env, "NIGHTFOLD_TEST_DIE_AFTER_ROWS": str(die_at)},
                logs,
                "victim",
                "worker",
                "run",
            )
            procs.append(victim)
            victim.wait(timeout=3600)
            assert victim.returncode == -9, f"{label}: the victim exited {victim.returncode}"
            killed = time.monotonic()
            taker = spawn_nightfold(env, logs, "taker", "worker", "run")
            procs.append(taker)
            wait_for(lambda: workers_registered(db_url) >= 2, 120, "the taker up")
            code = master.wait(timeout=3600)
            finished = time.monotonic()
        finally:
            stop(procs)
        if code != 0:
            raise RuntimeError(f"{label}: master exited {code}; see {logs}/master.log")
        per_attempt = _segments(db_url)
        exact = _verify(env, label)
    chunk_rows = sum(r for _, r in per_attempt.values())
    committed = per_attempt.get(1, (0, 0))[1]
    taker_read = chunk_rows - committed
    victim_read = die_at + (-die_at) % RunParams.scan_batch  # it dies at a batch's end
    reread = victim_read - committed
    assert taker_read - (chunk_rows - victim_read) == reread
    assert chunk_rows == planned, (chunk_rows, planned)
    out = {
        "map_chunks_planned": chunks,
        "label": label,
        "checkpoint_rows": checkpoint_rows,
        "checkpoint_seconds": checkpoint_seconds,
        "chunk_rows": chunk_rows,
        "victim_read": victim_read,
        "committed_at_kill": committed,
        "segments_at_kill": per_attempt.get(1, (0, 0))[0],
        "taker_read": taker_read,
        "reread": reread,
        "redo_fraction": round(reread / chunk_rows, 4),
        "kill_to_done_s": round(finished - killed, 2),
        "exact": exact,
    }
    log(
        f"{label}: chunk {chunk_rows:,} rows, victim read {victim_read:,}, committed "
        f"{committed:,}, taker re-read {reread:,} ({out['redo_fraction']:.3f}), exact {exact}"
    )
    return out


def _verify(env: dict[str, str], label: str) -> bool:
    res = subprocess.run(
        [sys.executable, "-m", "nightfold", "verify", "--day", DAY.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    (WORK / "logs" / label / "verify.log").write_text(res.stdout + res.stderr)
    return res.returncode == 0 and "OK" in res.stdout


def run() -> dict[str, Any]:
    url = _store_url().replace(f"table_prefix={PREFIX}", "table_prefix=nfresume")
    log(f"resume: one chunk of {CHUNK:,} rows, {BACKEND} backends, killed at {KILL_AT:.0%}")
    _put(url, list(generate_rows(DAY, CHUNK, salt_buckets=1)))
    with_checkpoints = _one(
        "resume-checkpoints", url, CHECKPOINT_ROWS, RunParams.checkpoint_seconds
    )
    without = _one("resume-no-checkpoints", url, CHUNK * 10, 10.0**9)
    result = {
        "resume_redo_fraction": with_checkpoints["redo_fraction"],
        "resume_checkpoint_rows": CHECKPOINT_ROWS,
        "resume_checkpoint_seconds": RunParams.checkpoint_seconds,
        "resume_redo_fraction_no_checkpoint": without["redo_fraction"],
        "resume_exact": with_checkpoints["exact"] and without["exact"],
        "target": TARGET,
        "met": with_checkpoints["redo_fraction"] <= TARGET and with_checkpoints["exact"],
        "chunk_rows": with_checkpoints["chunk_rows"],
        "kill_at": KILL_AT,
        "backend": BACKEND,
        "quick": QUICK,
        "runs": [with_checkpoints, without],
    }
    write_result("resume", result)
    log(
        f"resume_redo_fraction {result['resume_redo_fraction']} at checkpoint_rows "
        f"{CHECKPOINT_ROWS:,} (without checkpoints {result['resume_redo_fraction_no_checkpoint']})"
    )
    return result


if __name__ == "__main__":
    run()
