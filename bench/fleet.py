"""Fleet simulation: how many workers one master, one MariaDB and one RabbitMQ keep busy.

For each fleet size N (64, 256, 1,024 simulated workers) on a fresh database and
a fresh queue:

- a plan of no-op map chunks is recorded (job ``fleet_noop``), and the REAL
  master (``master/loop.py``: ticks, the outbox publishing hints on RabbitMQ,
  reclaiming, counting) drives it in its own process;
- the workers are the REAL worker (``worker/runner.py``: RabbitMQ consumer,
  processing threads, group-committed claims and completions, lease keeper,
  liveness beat), ``THREADS_PER_PROCESS`` processing threads per process, so
  1,024 workers are 4 processes. Only the chunk's work is simulated: the store's
  scan sleeps ``CHUNK_SECONDS`` (2 s) and yields nothing;
- after a warm-up, for ``WINDOW_SECONDS``: the workers' **idle fraction** (1 -
  time spent inside chunks / N x window: waiting for a hint, claiming,
  completing, acking all count as idle), chunks done, and the CPU per chunk of
  the master, MariaDB, RabbitMQ (their own processes, from /proc/<pid>/stat)
  and of the simulated workers (the load generator: on this 2-core machine it
  competes with the coordinator, so it is reported apart), plus the statements
  and round trips the workers and the master sent per chunk.

``fleet_workers_fed`` is the largest N kept at most 5% idle.

    python -m bench.fleet            # 64, 256, 1,024 workers (about 5 minutes)
    python -m bench.fleet --quick    # shorter windows
    python -m bench.fleet worker ... / master ...   # the child processes
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nightfold.common.jobs.base import Job, MapOutput

QUICK = os.environ.get("NIGHTFOLD_BENCH_QUICK", "") not in ("", "0")
SIZES = (64, 256, 1024)
CHUNK_SECONDS = 2.0
JITTER = 0.1
"""Each chunk takes CHUNK_SECONDS x uniform(1 - JITTER, 1 + JITTER): 2 s on
average. Exactly equal chunks make the fleet march in lockstep (every worker
finishing at the same instant, batches as large as the fleet), which real
chunks never do."""
THREADS_PER_PROCESS = 256
WARMUP_SECONDS = 6.0 if QUICK else 10.0
WINDOW_SECONDS = 10.0 if QUICK else 30.0
IDLE_TARGET = 0.05
DAY = dt.date(2026, 11, 20)
JOB = "fleet_noop"


class FleetNoop(Job[int]):
    """A job whose map reads nothing and writes nothing: the chunk's time is the store's sleep."""

    name = JOB

    def map_rows(self, rows: Any, out: MapOutput[int]) -> None:
        for _ in rows:
            out.rows_read += 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def encode(self, partial: int) -> bytes:
        return str(partial).encode()

    def decode(self, data: bytes) -> int:
        return int(data)

    def finalize(self, group: str, partial: int) -> dict[bytes, bytes]:
        return {}


class SleepStore:
    """A store whose every scan takes ``seconds`` and finds nothing; records when
    each scan ran (the busy intervals of the processing threads)."""

    def __init__(self, seconds: float, busy: list[tuple[float, float]]) -> None:
        self.seconds = seconds
        self.busy = busy

    def ensure_table(self, table: str, families: Sequence[str]) -> None:
        pass

    def scan(self, table: str, key_range: Any, **_: Any) -> Iterator[Any]:
        started = time.time()
        time.sleep(self.seconds * random.uniform(1 - JITTER, 1 + JITTER))
        self.busy.append((started, time.time()))
        yield from ()

    def put_many(self, table: str, rows: Any, *, batch_size: int = 1000) -> int:
        return 0

    def region_starts(self, table: str) -> list[bytes]:
        return []

    def delete_range(self, table: str, key_range: Any) -> int:
        return 0

    def delete_cells(self, table: str, cells: Any, **_: Any) -> int:
        return 0

    def drop_table(self, table: str) -> None:
        pass

    def close(self) -> None:
        pass


def _settings(db_url: str, queue_url: str) -> Any:
    from nightfold.common.config import Settings

    return Settings(
        database_url=db_url,
        broker_url=queue_url,
        store_url="hbase://127.0.0.1:9090",  # never opened: the store is simulated
        job=JOB,
        shutdown_grace_seconds=5.0,
        log_level="WARNING",
    )


def _sampler(path: Path, sample: Any, stop: threading.Event) -> threading.Thread:
    """Every second, append ``sample()`` (with the wall time) and rewrite ``path``."""
    samples: list[Any] = []

    def run() -> None:
        while True:
            samples.append([time.time(), *sample()])
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(samples))
            tmp.rename(path)
            if stop.wait(1.0):
                return

    t = threading.Thread(target=run, name="fleet-sampler", daemon=True)
    t.start()
    return t


# -- the child processes ------------------------------------------------------------------------


def worker_main(db_url: str, queue_url: str, threads: int, out: Path) -> None:
    """One worker process with ``threads`` processing threads, until SIGTERM."""
    from bench.statements import count
    from nightfold.common.db.engine import make_engine
    from nightfold.common.jobs import register
    from nightfold.common.transport.rabbitmq import RabbitConsumer
    from nightfold.worker.runner import Worker

    logging.basicConfig(level=logging.WARNING)
    register(FleetNoop)
    engine = make_engine(db_url)
    counts = count(engine)
    busy: list[tuple[float, float]] = []
    worker = Worker(
        _settings(db_url, queue_url),
        engine,
        lambda: RabbitConsumer(queue_url, threads),
        lambda: SleepStore(CHUNK_SECONDS, busy),  # type: ignore[arg-type, return-value]
        concurrency=threads,
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    batches = worker.processor.batches
    stop = threading.Event()
    samples = out.with_suffix(".samples")
    sampler = _sampler(
        samples,
        lambda: [
            counts.statements,
            counts.round_trips,
            batches.claims.batches,
            batches.claims.requests,
            batches.completions.batches,
            batches.completions.requests,
        ],
        stop,
    )
    worker.run()
    stop.set()
    sampler.join()
    engine.dispose()
    out.write_text(
        json.dumps(
            {
                "busy": busy,
                "samples": json.loads(samples.read_text()),
                "outcomes": {k.value: v for k, v in worker.loop.outcomes.items()},
            }
        )
    )


def master_main(db_url: str, queue_url: str, day: dt.date, out: Path) -> None:
    """The real master driving the run of ``day``, until SIGTERM."""
    from bench.statements import count
    from nightfold.common.db.engine import make_engine
    from nightfold.common.jobs import register
    from nightfold.common.transport.rabbitmq import RabbitPublisher
    from nightfold.master.loop import Master

    logging.basicConfig(level=logging.WARNING)
    register(FleetNoop)
    engine = make_engine(db_url)
    counts = count(engine)
    stop = threading.Event()
    _sampler(out, lambda: [counts.statements, counts.round_trips], stop)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    master = Master(
        _settings(db_url, queue_url),
        engine,
        SleepStore(0.0, []),  # type: ignore[arg-type]
        RabbitPublisher(queue_url),
        FleetNoop(),
    )
    master.drive(day)


# -- measuring one fleet ----------------------------------------------------------------------


def _listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` on this machine."""
    import psutil

    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return int(c.pid)
    return None


def _record_plan(db_url: str, day: dt.date, chunks: int, max_in_flight: int) -> int:
    from nightfold.common.db import runs as run_repo
    from nightfold.common.db.chunks import ChunkSpec
    from nightfold.common.db.engine import make_engine
    from nightfold.common.keys import KeyRange
    from nightfold.common.states import Stage
    from nightfold.master.planner import Plan, record_plan

    engine = make_engine(db_url)
    params = run_repo.RunParams(max_in_flight=max_in_flight, reduce_buckets=1)
    with engine.begin() as conn:
        run = run_repo.create_run(conn, JOB, day, 1, params, "fleet-bench")
        assert run is not None
        specs = [
            ChunkSpec(Stage.MAP, i, KeyRange(b"%010d" % i, b"%010d" % (i + 1)))
            for i in range(chunks)
        ]
        assert record_plan(conn, run, Plan(specs=specs, rows_estimate=0), "fleet-bench")
    engine.dispose()
    return run.id


def _done(db_url: str, run_id: int) -> int:
    from sqlalchemy import func, select

    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.models import Chunk

    engine = make_engine(db_url, pool_size=1)
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).where(Chunk.run_id == run_id, Chunk.state == "done")
        ).scalar_one()
    engine.dispose()
    return int(n)


def _done_twice(db_url: str, run_id: int) -> int:
    """Chunks with more than one ``done`` event (must be 0: exactly once)."""
    from sqlalchemy import func, select

    from nightfold.common.db.engine import make_engine
    from nightfold.common.db.models import RunEvent

    engine = make_engine(db_url, pool_size=1)
    with engine.connect() as conn:
        twice = conn.execute(
            select(RunEvent.chunk_id)
            .where(RunEvent.run_id == run_id, RunEvent.kind == "done")
            .group_by(RunEvent.chunk_id)
            .having(func.count() > 1)
        ).all()
    engine.dispose()
    return len(twice)


def _at(samples: list[list[float]], t: float, column: int) -> float:
    """The value of ``column`` at wall time ``t``, linearly between samples."""
    before = [s for s in samples if s[0] <= t]
    after = [s for s in samples if s[0] >= t]
    if not before:
        return after[0][column] if after else 0.0
    if not after:
        return before[-1][column]
    a, b = before[-1], after[0]
    if b[0] == a[0]:
        return a[column]
    return a[column] + (b[column] - a[column]) * (t - a[0]) / (b[0] - a[0])


def _busy_in(busy: list[tuple[float, float]], t0: float, t1: float) -> float:
    return sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in busy)


def run_fleet(workers: int, db_url: str, queue_url: str) -> dict[str, Any]:
    """Measure one fleet of ``workers`` simulated workers (see the module's docstring)."""
    from urllib.parse import urlsplit

    from bench.common import WORK, clean_env, log
    from bench.coordinator import mariadb_pid, proc_cpu_s

    WORK.mkdir(parents=True, exist_ok=True)
    day = DAY + dt.timedelta(days=workers)
    seconds = WARMUP_SECONDS + WINDOW_SECONDS + 10
    chunks = int(workers * seconds / CHUNK_SECONDS * 1.2) + 200
    max_in_flight = 2 * workers + 64  # every worker busy, and as many hints again ahead
    run_id = _record_plan(db_url, day, chunks, max_in_flight)
    procs = max(1, -(-workers // THREADS_PER_PROCESS))
    threads = workers // procs
    tag = f"fleet-{workers}-{os.getpid()}"
    master_out = WORK / f"{tag}-master.samples"
    outs = [WORK / f"{tag}-w{i}.json" for i in range(procs)]
    env = clean_env()
    me = [sys.executable, "-m", "bench.fleet"]
    master = subprocess.Popen(
        [*me, "master", db_url, queue_url, day.isoformat(), str(master_out)], env=env
    )
    sims = [
        subprocess.Popen([*me, "worker", db_url, queue_url, str(threads), str(out)], env=env)
        for out in outs
    ]
    db_pid = mariadb_pid(db_url)
    mq_pid = _listener_pid(urlsplit(queue_url).port or 5672)
    try:
        time.sleep(WARMUP_SECONDS + 2 * procs)  # imports, connections, the first chunks
        pids = {"master": master.pid, "mariadb": db_pid, "rabbitmq": mq_pid}
        cpu0 = {k: proc_cpu_s(p) for k, p in pids.items()}
        sims0 = sum(proc_cpu_s(p.pid) or 0.0 for p in sims)
        t0, done0 = time.time(), _done(db_url, run_id)
        time.sleep(WINDOW_SECONDS)
        t1 = time.time()
        cpu1 = {k: proc_cpu_s(p) for k, p in pids.items()}
        sims1 = sum(proc_cpu_s(p.pid) or 0.0 for p in sims)
        done1 = _done(db_url, run_id)
        load = os.getloadavg()[0]
    finally:
        for p in sims:
            p.send_signal(signal.SIGTERM)
        for p in sims:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=60)
    parts = [json.loads(out.read_text()) for out in outs]
    done = done1 - done0
    busy = sum(_busy_in([tuple(b) for b in p["busy"]], t0, t1) for p in parts)  # type: ignore[misc]
    idle = 1 - busy / (workers * (t1 - t0))

    def delta(samples: list[list[float]], column: int) -> float:
        return _at(samples, t1, column) - _at(samples, t0, column)

    worker_statements = sum(delta(p["samples"], 1) for p in parts)
    worker_trips = sum(delta(p["samples"], 2) for p in parts)
    claim_tx = sum(delta(p["samples"], 3) for p in parts)
    claim_req = sum(delta(p["samples"], 4) for p in parts)
    complete_tx = sum(delta(p["samples"], 5) for p in parts)
    complete_req = sum(delta(p["samples"], 6) for p in parts)
    master_samples = json.loads(master_out.read_text())
    outcomes: dict[str, int] = {}
    for p in parts:
        for k, v in p["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
    if not os.environ.get("NIGHTFOLD_BENCH_KEEP"):
        for f in [master_out, *outs, *(o.with_suffix(".samples") for o in outs)]:
            f.unlink(missing_ok=True)

    def per_chunk_ms(name: str) -> float | None:
        a, b = cpu0.get(name), cpu1.get(name)
        return None if a is None or b is None or not done else round(1000 * (b - a) / done, 3)

    n = max(1, done)
    parts_ms = [per_chunk_ms(k) for k in ("master", "mariadb", "rabbitmq")]
    coordinator_ms = None if None in parts_ms else round(sum(p or 0.0 for p in parts_ms), 3)
    result = {
        "workers": workers,
        "processes": procs,
        "threads_per_process": threads,
        "chunk_seconds": CHUNK_SECONDS,
        "window_s": round(t1 - t0, 1),
        "chunks_done": done,
        "chunks_per_s": round(done / (t1 - t0), 1),
        "chunks_per_s_ideal": round(workers / CHUNK_SECONDS, 1),
        "idle_fraction": round(idle, 4),
        "master_cpu_ms_per_chunk": per_chunk_ms("master"),
        "mariadb_cpu_ms_per_chunk": per_chunk_ms("mariadb"),
        "rabbitmq_cpu_ms_per_chunk": per_chunk_ms("rabbitmq"),
        "workers_cpu_ms_per_chunk": round(1000 * (sims1 - sims0) / n, 3),
        "coordinator_cpu_ms_per_chunk": coordinator_ms,
        "coordinator_chunks_per_s_on_2_cores": None
        if not coordinator_ms
        else round(2000 / coordinator_ms),
        "coordinator_cpu_share": round(
            sum(
                (cpu1[k] or 0.0) - (cpu0[k] or 0.0)
                for k in ("master", "mariadb", "rabbitmq")
                if cpu0.get(k) is not None
            )
            / (t1 - t0),
            3,
        ),
        "worker_statements_per_chunk": round(worker_statements / n, 2),
        "worker_round_trips_per_chunk": round(worker_trips / n, 2),
        "master_statements_per_chunk": round(delta(master_samples, 1) / n, 3),
        "master_round_trips_per_chunk": round(delta(master_samples, 2) / n, 3),
        "chunks_per_claim_transaction": round(claim_req / claim_tx, 2) if claim_tx else None,
        "chunks_per_complete_transaction": round(complete_req / complete_tx, 2)
        if complete_tx
        else None,
        "outcomes": outcomes,
        "chunks_done_twice": _done_twice(db_url, run_id),
        "loadavg_1m": round(load, 2),
    }
    log(
        f"fleet: {workers} workers: idle {100 * idle:.1f}%, {result['chunks_per_s']}/s of "
        f"{result['chunks_per_s_ideal']}/s; CPU ms per chunk: master "
        f"{result['master_cpu_ms_per_chunk']}, MariaDB {result['mariadb_cpu_ms_per_chunk']}, "
        f"RabbitMQ {result['rabbitmq_cpu_ms_per_chunk']}, simulated workers "
        f"{result['workers_cpu_ms_per_chunk']}; {result['worker_statements_per_chunk']} worker "
        f"statements per chunk (load {load:.1f})"
    )
    return result


def run(sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    from bench.common import fresh_mariadb, fresh_queue, write_result

    fleets = []
    for workers in sizes:
        with fresh_mariadb("bf") as db_url, fresh_queue("nightfold.fleet") as queue_url:
            fleets.append(run_fleet(workers, db_url, queue_url))
    fed = [f["workers"] for f in fleets if f["idle_fraction"] <= IDLE_TARGET]
    largest = fleets[-1]
    result = {
        "fleet_workers_fed": max(fed) if fed else 0,
        "fleet_workers_fed_target": ">= 1024",
        "fleet_workers_fed_met": bool(fed) and max(fed) >= 1024,
        "idle_target": IDLE_TARGET,
        "chunk_seconds": CHUNK_SECONDS,
        "fleet_idle_fraction_1024": next(
            (f["idle_fraction"] for f in fleets if f["workers"] == 1024), None
        ),
        "fleet_chunks_per_s": largest["chunks_per_s"],
        "fleet_master_cpu_ms_per_chunk": largest["master_cpu_ms_per_chunk"],
        "fleet_mariadb_cpu_ms_per_chunk": largest["mariadb_cpu_ms_per_chunk"],
        "fleet_rabbitmq_cpu_ms_per_chunk": largest["rabbitmq_cpu_ms_per_chunk"],
        "fleet_coordinator_cpu_ms_per_chunk": largest["coordinator_cpu_ms_per_chunk"],
        "fleet_workers_coordinator_model": None
        if not largest["coordinator_chunks_per_s_on_2_cores"]
        else int(largest["coordinator_chunks_per_s_on_2_cores"] * CHUNK_SECONDS),
        "fleet_workers_coordinator_model_note": (
            "workers of 2 s chunks the master + MariaDB + RabbitMQ could feed with this "
            "machine's 2 cores to themselves, from their measured CPU per chunk at the "
            "largest fleet (the simulated workers run elsewhere in a real fleet)"
        ),
        "quick": QUICK,
        "fleets": fleets,
    }
    write_result("fleet", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")])
    sub = parser.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    w.add_argument("db_url")
    w.add_argument("queue_url")
    w.add_argument("threads", type=int)
    w.add_argument("out", type=Path)
    m = sub.add_parser("master")
    m.add_argument("db_url")
    m.add_argument("queue_url")
    m.add_argument("day", type=dt.date.fromisoformat)
    m.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.cmd == "worker":
        worker_main(args.db_url, args.queue_url, args.threads, args.out)
    elif args.cmd == "master":
        master_main(args.db_url, args.queue_url, args.day, args.out)
    else:
        if args.quick:
            os.environ["NIGHTFOLD_BENCH_QUICK"] = "1"
            global WARMUP_SECONDS, WINDOW_SECONDS
            WARMUP_SECONDS, WINDOW_SECONDS = 6.0, 10.0
        run(args.sizes or SIZES)


if __name__ == "__main__":
    main()
