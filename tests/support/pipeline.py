"""Running the real pipeline as processes, the way an operator does: a master
and worker processes of the installed ``nightfold`` command, configured only
through the environment. (``stop`` and ``wait_for`` serve the benchmarks too.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select

from nightfold.common.db.models import Chunk, Run, RunEvent

PIPELINE_DAY = "2026-11-22"
PIPELINE_ROWS = 200_000
"""The day and size the pipeline tests seed (a test may parametrize ``rows``)."""


@dataclass
class Cluster:
    """The processes of one test, all sharing one environment."""

    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nightfold", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nightfold", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        return self._spawn("worker", "worker", "run", *args)

    def master(self, day: str, *args: str) -> subprocess.Popen[bytes]:
        return self._spawn("master", "master", "run", "--day", day, *args)

    def stop_all(self) -> None:
        stop(self.procs)

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def stop(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM every live process, then wait ``timeout`` for them all; kill what is left."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll ``predicate`` until it holds; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def chunk_counts(engine: Engine, stage: str = "map") -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Chunk.state, func.count()).where(Chunk.stage == stage).group_by(Chunk.state)
        )
        return {str(s): int(n) for s, n in rows}


def summary_stage(engine: Engine) -> str:
    """The stage that writes the summaries: ``combine`` when the plan has combine
    items (a sharded job's day with hot groups), else ``reduce``."""
    return "combine" if chunk_counts(engine, "combine") else "reduce"


def run_state(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Run.state).order_by(Run.id.desc()).limit(1)).scalar()


def claimed_by(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        owners = conn.execute(select(Chunk.owner).where(Chunk.state == "claimed")).scalars()
        return any(o and o.split(":")[1] == str(pid) for o in owners)


def done_events_per_chunk(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunEvent.chunk_id, func.count())
            .where(RunEvent.kind == "done")
            .group_by(RunEvent.chunk_id)
        )
        return {int(c): int(n) for c, n in rows}


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def event_count(engine: Engine, kind: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(RunEvent.kind == kind)).scalar_one())


def assert_verifies(cluster: Cluster, day: str, *args: str) -> None:
    """``nightfold verify`` of ``day`` exits 0 and says OK (``args``: e.g. ``--job``)."""
    res = cluster.cli("verify", "--day", day, *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout


def assert_no_chunk_done_twice(engine: Engine) -> None:
    """Some chunk completed, and none has two ``done`` events (fencing held)."""
    per_chunk = done_events_per_chunk(engine)
    assert per_chunk, "no chunk completed"
    assert max(per_chunk.values()) == 1, per_chunk


POISON_KEY = b"00|20261122|m000001|POISON"


def add_poison_row(cluster: Cluster) -> None:
    """A raw row of the pipeline day that makes ``poison_daily`` raise (until
    ``NIGHTFOLD_TEST_POISON_FIXED=1`` tells the job it was fixed)."""
    from nightfold.common.store import open_store

    store = open_store(cluster.env["NIGHTFOLD_STORE_URL"])
    try:
        store.put_many("nightfold_raw", [(POISON_KEY, {b"o:merchant": b"x"})])
    finally:
        store.close()
