"""Checking a trial once its run is over: the workers stop cleanly (SIGTERM, exit 0,
garbage all dead-lettered), each run ended as the scenario expects, masters exited with
the expected code and one clear line, one master owned a contested run, no chunk was
done twice, no row was lost or counted twice (against the oracle, and ``verify``), and
after a rerun of changed raw rows no stale summary cell is left (``stale``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import select

from nightfold.common.db.models import Run, RunEvent
from nightfold.common.jobs import get_job, import_job_modules
from nightfold.common.store import open_store
from nightfold.common.transport.rabbitmq import queue_depth
from nightfold.common.urls import with_query
from nightfold.ops.verify import compare, compute_expected, read_stored
from tests.support.chaos import outcomes, recovery, stale
from tests.support.chaos.plan import MASTER_KILLS, RESTARTS, SCENARIOS
from tests.support.chaos.procs import tracebacks
from tests.support.chaos.rig import Rig
from tests.support.pipeline import done_events_per_chunk
from tests.support.services import REPO


def _run_state(rig: Rig, run_id: int | None = None) -> tuple[int, str, str | None, int] | None:
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        q = select(Run.id, Run.state, Run.error, Run.rows_read).order_by(Run.id.desc())
        if run_id is not None:
            q = q.where(Run.id == run_id)
        row = conn.execute(q.limit(1)).first()
    return (int(row[0]), str(row[1]), row[2], int(row[3] or 0)) if row else None


def _stop_workers(rig: Rig) -> None:
    broker = with_query(rig.env.broker_url, queue=rig.queue)
    if rig.garbage_sent:  # let the workers drain the queue into the dead letters
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            with suppress(Exception):
                work, dead = queue_depth(broker)
                if work == 0 and dead >= rig.garbage_sent:
                    break
            time.sleep(0.2)
    rig.wait_started()  # a worker SIGTERMed before it installed its handlers dies of it
    for w in rig.workers_alive():
        w.signalled = "SIGTERM(end)"
        w.popen.send_signal(signal.SIGTERM)
    for w in [p for p in rig.procs if p.role == "worker"]:
        rc = rig.wait_exit(w, 40)
        if rc is None:
            rig.result.problem(f"worker pid {w.pid} did not stop within 40s of SIGTERM")
        elif rc != 0 and w.signalled != "SIGKILL":
            rig.result.problem(f"worker pid {w.pid} exited {rc} on SIGTERM")
    for w in [p for p in rig.procs if p.role == "worker"]:
        for where in tracebacks(w.stderr_text()):
            rig.note_traceback(w, where)
    if rig.garbage_sent:
        try:
            work, dead = queue_depth(broker)
        except Exception as exc:
            rig.result.anomalies.append(f"cannot read queue depth: {exc}")
        else:
            if dead != rig.garbage_sent:
                rig.result.problem(
                    f"{rig.garbage_sent} garbage messages sent, {dead} dead-lettered "
                    f"({work} left in the work queue)"
                )


def assess(rig: Rig) -> None:
    p, r = rig.plan, rig.result
    assert rig.engine is not None
    last_state = _run_state(rig)
    if last_state is not None and last_state[1] == "succeeded":
        _start_verify(rig)  # the summaries are final: verify while the workers stop
    _stop_workers(rig)
    masters = [m for m in rig.procs if m.role == "master"]
    codes = {m.pid: m.popen.returncode for m in masters}
    r.outcome = ""
    with rig.engine.connect() as conn:
        runs = conn.execute(
            select(Run.id, Run.state, Run.error, Run.rows_read, Run.generation, Run.day).order_by(
                Run.id
            )
        ).all()
    if not runs:
        r.problem("no run was created")
        return
    states = [str(row[1]) for row in runs]
    r.outcome = "+".join(states)
    r.runs_total = len(runs)
    expect = outcomes.expectations(rig, runs)
    last, expected_final, ok_codes = expect.last, expect.final, expect.ok_codes
    if str(last[1]) == expected_final:
        r.runs_as_expected += 1
    else:
        r.problem(f"run {last[0]} ended {last[1]} ({last[2]!r}), expected {expected_final}")
    # masters: one clear line for a conflict, the expected code otherwise
    for m in masters:
        code = codes[m.pid]
        if m.signalled == "SIGKILL":
            continue
        for where in tracebacks(m.stderr_text()):
            rig.note_traceback(m, where)
        if code == 5:
            line = m.last_error_line()
            if "owned by master" not in line and "another master took over" not in line:
                r.problem(f"{m.name} exited 5 without saying why: {line!r}")
            continue
        if code not in ok_codes:
            r.problem(f"{m.name} (pid {m.pid}) exited {code}: {m.last_error_line()!r}")
    if not any(codes[m.pid] == 0 for m in masters) and expected_final == "succeeded":
        r.problem("no master exited 0")
    _check_one_owner(rig, int(runs[0][0]))
    per_chunk = done_events_per_chunk(rig.engine)
    twice = {c: n for c, n in per_chunk.items() if n > 1}
    r.chunks_done_twice = len(twice)
    if twice:
        r.problem(f"chunks done more than once: {twice}")
    recovery.measure(rig)
    if str(last[1]) == "succeeded":
        _check_rows(rig, int(last[3] or 0))
        if p.scenario == "rerun_changed_raw" and r.scenario_done:
            stale.check_no_stale_cells(rig)


def _check_one_owner(rig: Rig, run_id: int) -> None:
    """Two masters started for one run: the second refuses. Unless a master was killed
    or an outage let a heartbeat go stale, exactly one master ever acquires the run."""
    faults = {f.kind for f in rig.plan.faults if f.fired}
    if "two_masters" not in faults or faults & {*MASTER_KILLS, *RESTARTS, *SCENARIOS}:
        return
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        actors = set(
            conn.execute(
                select(RunEvent.actor).where(
                    RunEvent.run_id == run_id, RunEvent.kind == "master_acquired"
                )
            ).scalars()
        )
    if len(actors) != 1:
        rig.result.problem(f"two masters started, {len(actors)} acquired the run: {actors}")


def _start_verify(rig: Rig) -> None:
    """``nightfold verify`` for the trial's day, in the background."""
    rig.verifying = subprocess.Popen(
        [sys.executable, "-m", "nightfold", "verify", "--day", rig.plan.day.isoformat()],
        env=rig.proc_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


def _check_rows(rig: Rig, run_rows: int) -> None:
    """Rows lost / counted twice, group by group, against the oracle; and verify."""
    p, r = rig.plan, rig.result
    if rig.verifying is None:
        _start_verify(rig)
    assert rig.verifying is not None
    try:
        out, _ = rig.verifying.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        rig.verifying.kill()
        out, _ = rig.verifying.communicate()
    (rig.dir / "verify.out").write_text(out)
    if rig.verifying.returncode != 0 or "OK" not in out:
        r.problem(f"verify failed (exit {rig.verifying.returncode}): {out[-600:]}")
    if p.job != "merchant_daily":  # poison_daily, paced_daily
        import_job_modules("tests.support.jobs")
    job = get_job(p.job)
    store = open_store(rig.env.store_url)
    try:
        with _poison_fixed():
            expected = compute_expected(store, job, p.day, p.salt_buckets)
        stored = read_stored(store, job, p.day)
    finally:
        store.close()

    def rows_of(cells: dict[bytes, bytes]) -> int:
        return int(cells.get(b"s:orders", b"0")) + int(cells.get(b"s:malformed", b"0"))

    total = sum(rows_of(c) for c in expected.values())
    if total != r.rows_expected:
        r.problem(f"the oracle counts {total} rows, {r.rows_expected} were seeded")
    groups = expected.keys() | stored.keys()
    if p.scenario == "rerun_changed_raw":
        groups = set(expected)  # a stored group the oracle lacks is stale: ``stale`` counts it
    for group in groups:
        delta = rows_of(stored.get(group, {})) - rows_of(expected.get(group, {}))
        if delta < 0:
            r.rows_lost -= delta
        else:
            r.rows_double_counted += delta
    if r.rows_lost or r.rows_double_counted:
        diffs = compare(expected, stored)[:5]
        r.problem(
            f"{r.rows_lost} rows lost, {r.rows_double_counted} counted twice: "
            + "; ".join(str(d) for d in diffs)
        )
    if run_rows != r.rows_expected:
        r.problem(f"the run's rows_read is {run_rows}, {r.rows_expected} rows were seeded")


@contextmanager
def _poison_fixed() -> Iterator[None]:
    """The oracle runs after the fix (``tests.support.jobs`` reads the flag per batch)."""
    before = os.environ.get("NIGHTFOLD_TEST_POISON_FIXED")
    os.environ["NIGHTFOLD_TEST_POISON_FIXED"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["NIGHTFOLD_TEST_POISON_FIXED"]
        else:
            os.environ["NIGHTFOLD_TEST_POISON_FIXED"] = before
