"""5. Against Celery: the same job on the same data and the same RabbitMQ, as a
Celery chord (``bench/celery_app.py``), with the same number of worker
processes (each one task at a time), interleaved with nightfold runs.

Then exactness when a worker is SIGKILLed mid-map and a replacement starts:

- nightfold: the worker process is killed; its lease expires, the chunk is redone;
- Celery, worker killed: the whole worker (main process and pool child) dies, so
  its connection drops and RabbitMQ redelivers the unacked (``acks_late``) task;
- Celery, pool child killed: the process running the task dies (an OOM kill) while
  its worker lives: Celery acks the message and fails the task (WorkerLostError).

Both drivers plan the day the same way (the planner's sampling and splitter), so
the chunks are identical. Wall time: from spawning the driver (nightfold's master,
Celery's chord client) to its exit, with the workers already up.

    python -m bench.celery_compare
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    DAY,
    DEFAULT_CHUNK_ROWS,
    REPS,
    ROWS,
    SALT_BUCKETS,
    WORK,
    clean_env,
    clear_outputs,
    ensure_seeded,
    expected_digest,
    fresh_mariadb,
    fresh_queue,
    interleaved,
    log,
    median,
    paired_ratios,
    store_url,
    stored_digest,
    wait_rusage,
    write_result,
)
from bench.runner import (
    nightfold_env,
    nightfold_workers,
    run_nightfold_hbase,
    spawn_master,
    spawn_nightfold,
)
from tests.support.pipeline import wait_for
from tests.support.services import unique_name

WORKERS = 2
KILL_AFTER_DONE = int(os.environ.get("NIGHTFOLD_BENCH_KILL_AFTER", "6"))
TARGET_SPEEDUP = 1.2
DRIVER_TIMEOUT = 900


# -- the chord client (the driver process) ------------------------------------------------------


def drive(out: Path) -> None:
    """Plan the day like nightfold's planner (regions and the same bounded probes,
    no guideposts: a first night), run the chord, wait for the summaries."""
    from celery import chord, group

    from bench import celery_app
    from nightfold.common.keys import day_ranges
    from nightfold.common.store import open_store
    from nightfold.master.planner import plan_map
    from nightfold.master.splitter import estimate_rows

    store = open_store(os.environ["BENCH_STORE_URL"])
    ranges = day_ranges(DAY, SALT_BUCKETS)
    mapped = plan_map(
        store,
        celery_app.JOB.raw_table,
        ranges,
        DEFAULT_CHUNK_ROWS,
        lambda: open_store(os.environ["BENCH_STORE_URL"]),
    )
    chunks = [c.range for c in mapped.chunks]
    rows = estimate_rows(mapped.chunks)
    store.close()
    header = group(
        celery_app.map_chunk.s(i, r.start.hex(), r.end.hex()) for i, r in enumerate(chunks)
    )
    result = chord(header)(celery_app.reduce_all.s())
    state = "SUCCESS"
    error = None
    try:
        result.get(timeout=DRIVER_TIMEOUT, interval=0.25, propagate=True)
    except Exception as exc:
        state, error = "FAILURE", f"{type(exc).__name__}: {exc}"[:500]
    out.write_text(
        json.dumps({"chunks": len(chunks), "rows": rows, "state": state, "error": error})
    )


# -- workers and runs ---------------------------------------------------------------------------


def _celery_env(backend: str, queue: str, url: str) -> dict[str, str]:
    env = clean_env()
    env.update(
        BENCH_CELERY_BROKER=with_query_free(queue),
        BENCH_CELERY_BACKEND="db+" + backend,
        BENCH_CELERY_QUEUE=queue_name(queue),
        BENCH_STORE_URL=url,
    )
    return env


def with_query_free(url: str) -> str:
    return url.split("?", 1)[0]


def queue_name(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(url).query)["queue"][0]


def _spawn_celery_worker(env: dict[str, str], logs: Path, name: str) -> subprocess.Popen[bytes]:
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{name}.log"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}-{unique_name('')}@%h",
            "-Q",
            env["BENCH_CELERY_QUEUE"],
        ],
        env=env,
        stdout=log_file.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: "kill the worker" kills all of it
    )


def _ready(logs: Path, name: str) -> bool:
    path = logs / f"{name}.log"
    return path.exists() and b" ready." in path.read_bytes()


def _stop_group(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
    deadline = time.monotonic() + 30
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _celery_successes(backend: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(backend)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT COUNT(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
                ).scalar_one()
            )
    except Exception:
        return 0
    finally:
        engine.dispose()


def _prepare_backend(env: dict[str, str]) -> None:
    """Create Celery's result tables up front (untimed), as a long-lived deployment has them."""
    code = "from bench.celery_app import app; app.backend.ResultSession().close()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def run_celery(
    label: str, kill: str | None = None, timeout: float = DRIVER_TIMEOUT
) -> dict[str, Any]:
    """One chord run; ``kill`` is None, ``"worker"`` or ``"child"`` (see the module doc).

    A chord that has not finished after ``timeout`` seconds is recorded as hung (a
    killed pool child can take the chord's ``chord_unlock`` task down with it).
    """
    from bench.celery_app import GENERATION, SUMMARY_TABLE

    url = store_url()
    clear_outputs(url, generation=GENERATION, summary_table=SUMMARY_TABLE)
    logs = WORK / "logs" / label
    out = WORK / f"{label}.json"
    with fresh_mariadb("bcel") as backend, fresh_queue("nfbench.celery") as queue:
        env = _celery_env(backend, queue, url)
        _prepare_backend(env)
        names = [f"celery-{i}" for i in range(WORKERS)]
        procs = [_spawn_celery_worker(env, logs, n) for n in names]
        killed: dict[str, Any] = {}
        try:
            wait_for(lambda: all(_ready(logs, n) for n in names), 120, "celery workers ready")
            started = time.monotonic()
            driver = subprocess.Popen(
                [sys.executable, "-m", "bench.celery_compare", "drive", "--out", str(out)],
                env=env,
            )
            if kill is not None:
                wait_for(
                    lambda: _celery_successes(backend) >= KILL_AFTER_DONE,
                    600,
                    "celery map tasks done",
                    poll=0.05,
                )
                killed = _kill_celery(procs, kill)
                procs.append(_spawn_celery_worker(env, logs, "celery-replacement"))
            try:
                driver.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
            wall = time.monotonic() - started
        finally:
            _stop_group(procs)
        if out.exists():
            summary = json.loads(out.read_text())
            out.unlink()
        else:
            summary = {"state": "HUNG", "error": f"no result after {timeout:.0f} s"}
    digest = stored_digest(url, SUMMARY_TABLE)
    return {
        "label": label,
        "wall_s": wall,
        **summary,
        "digest": digest,
        "exact": summary["state"] == "SUCCESS" and digest == expected_digest(),
        **killed,
    }


def _kill_celery(procs: list[subprocess.Popen[bytes]], kill: str) -> dict[str, Any]:
    import psutil

    victim = procs[0]
    children = psutil.Process(victim.pid).children(recursive=True)
    if kill == "worker":
        os.killpg(victim.pid, signal.SIGKILL)
        return {"killed": "worker (main process and pool child, SIGKILL)"}
    child = children[0]
    child.send_signal(signal.SIGKILL)
    return {"killed": f"pool child {child.pid} of worker {victim.pid} (SIGKILL)"}


def run_nightfold_kill(label: str) -> dict[str, Any]:
    """nightfold with a worker SIGKILLed mid-map and a replacement started."""
    from sqlalchemy import func, select

    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.models import Chunk, RunEvent

    url = store_url()
    clear_outputs(url)
    with fresh_mariadb("bk") as db_url, fresh_queue() as queue_url:
        engine = make_engine(db_url)

        def done() -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        select(func.count()).where(Chunk.stage == "map", Chunk.state == "done")
                    ).scalar_one()
                )

        env = nightfold_env(db_url, queue_url, url, lease_seconds=10)
        logs = WORK / "logs" / label
        replacement: list[subprocess.Popen[bytes]] = []
        with nightfold_workers(env, logs, WORKERS, db_url) as workers:

            def killer() -> None:
                wait_for(lambda: done() >= KILL_AFTER_DONE, 600, "map chunks done", poll=0.05)
                victim = workers[0]
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                replacement.append(
                    spawn_nightfold(env, logs, "worker-replacement", "worker", "run")
                )

            thread = threading.Thread(target=killer, daemon=True)
            started = time.monotonic()
            master = spawn_master(env, logs)
            thread.start()  # once the master runs
            code, _ = wait_rusage(master, 900)
            wall = time.monotonic() - started
            thread.join(timeout=5)
        for p in replacement:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
        with engine.connect() as conn:
            redone = conn.execute(
                select(func.count()).where(Chunk.state == "done", Chunk.attempt > 1)
            ).scalar_one()
            done_events = conn.execute(
                select(func.count()).where(RunEvent.kind == "done")
            ).scalar_one()
        engine.dispose()
    digest = stored_digest(url)
    return {
        "label": label,
        "wall_s": wall,
        "digest": digest,
        "exact": code == 0 and digest == expected_digest(),
        "chunks_retried": int(redone),
        "done_events": int(done_events),
        "killed": "worker process (SIGKILL), replacement started; lease 10 s",
    }


def run(reps: int = REPS) -> dict[str, Any]:
    ensure_seeded()
    expected_digest()
    nightfold: list[dict[str, Any]] = []
    celery: list[dict[str, Any]] = []
    for rep, variant in interleaved(["nightfold", "celery"], reps):
        if variant == "nightfold":
            r = run_nightfold_hbase(f"celery-cmp-nightfold-{rep}", workers=WORKERS)
            nightfold.append({**r.asdict(), "exact": r.digest == expected_digest()})
            log(f"celery compare rep {rep}: nightfold {r.wall_s:.1f} s")
        else:
            c = run_celery(f"celery-cmp-celery-{rep}")
            celery.append(c)
            log(f"celery compare rep {rep}: celery {c['wall_s']:.1f} s ({c['state']})")
    ratios = paired_ratios([c["wall_s"] for c in celery], [n["wall_s"] for n in nightfold])
    nf_kill = run_nightfold_kill("celery-cmp-nightfold-kill")
    log(f"celery compare: nightfold with a worker killed: exact={nf_kill['exact']}")
    # a kill run gets 1.5 times a normal run's wall (and 30 s) before it counts as hung
    patience = 1.5 * max(c["wall_s"] for c in celery) + 30
    celery_kill = run_celery("celery-cmp-celery-kill-worker", kill="worker", timeout=patience)
    log(f"celery compare: celery with a worker killed: exact={celery_kill['exact']}")
    celery_child = run_celery("celery-cmp-celery-kill-child", kill="child", timeout=patience)
    log(f"celery compare: celery with a pool child killed: exact={celery_child['exact']}")
    ratio = median(ratios)
    result = {
        "rows": ROWS,
        "workers": WORKERS,
        "reps": reps,
        "celery_wall_ratio": round(ratio, 3),
        "pair_ratios": [round(x, 3) for x in ratios],
        "target": f">= {TARGET_SPEEDUP}",
        "met": ratio >= TARGET_SPEEDUP,
        "celery_exact_after_kill": celery_kill["exact"],
        "celery_exact_after_child_kill": celery_child["exact"],
        "nightfold_exact_after_kill": nf_kill["exact"],
        "nightfold_runs": nightfold,
        "celery_runs": celery,
        "kill_runs": {
            "nightfold": nf_kill,
            "celery_worker": celery_kill,
            "celery_child": celery_child,
        },
        "celery_setup": {
            "pool": "prefork, concurrency 1 per worker",
            "acks_late": True,
            "prefetch_multiplier": 1,
            "result_backend": "database (MariaDB)",
        },
    }
    write_result("celery_compare", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    d = sub.add_parser("drive")
    d.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.cmd == "drive":
        drive(Path(args.out))
    else:
        run()


if __name__ == "__main__":
    main()
