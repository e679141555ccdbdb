"""Injecting a fault when its moment has come: killing the master (and restarting it,
as cron or an operator would), signalling workers, restarting a shared service, a
cancel, a database outage past the master's deadline, and the poison scenario's fix and
rerun. Polluting the queue is ``messages``."""

from __future__ import annotations

import os
import random
import signal
import time

from sqlalchemy import select

from nightfold.common.db import runs as run_repo
from nightfold.common.db.models import RunEvent
from tests.support.chaos import messages, nightly, rejects, splits
from tests.support.chaos.observe import Snap
from tests.support.chaos.plan import (
    MASTER_KILLS,
    MESSAGES,
    NIGHTLY,
    RESTARTS,
    SEGMENTS,
    SERVICE_OF,
    TERMINAL,
    WORKER_FAULTS,
    Fault,
)
from tests.support.chaos.procs import Proc, services_command, tracebacks
from tests.support.chaos.rig import Rig


def fire(rig: Rig, f: Fault, snap: Snap) -> None:
    if f.kind in MASTER_KILLS:
        _kill_master(rig, f, snap)
    elif f.kind in WORKER_FAULTS:
        _signal_worker(rig, f, snap)
    elif f.kind in RESTARTS:
        _restart_service(rig, f)
    elif f.kind in MESSAGES:
        messages.publish(rig, f, snap)
    elif f.kind == "two_masters":
        proc = rig.master()
        rig.fired(f, "two_masters", f"second master pid {proc.pid} mid-run")
    elif f.kind == "cancel":
        _cancel(rig, f, snap)
    elif f.kind == "outage_past_deadline":
        _outage(rig, f)
    elif f.kind == "store_rejects":
        rejects.fire(rig, f, snap)
    elif f.kind in NIGHTLY:
        nightly.fire(rig, f, snap)
    elif f.kind in SEGMENTS:
        splits.fire(rig, f, snap)
    else:
        raise ValueError(f.kind)


def _kill_master(rig: Rig, f: Fault, snap: Snap) -> None:
    """SIGKILL the run's owner (the snapshot that fired the fault names it, so no
    query delays the kill), classify the kill by the run it left, restart a master."""
    rng = random.Random(f"{rig.plan.seed}:{f.kind}")
    if f.kind == "master_kill_planning":
        time.sleep(rng.uniform(0, 0.05))
    alive = rig.masters_alive()
    owner = snap.owner_pid
    target = next((p for p in alive if p.pid == owner), alive[0] if alive else None)
    if target is None:
        f.missed = True
        return
    target.signalled = "SIGKILL"
    os.kill(target.pid, signal.SIGKILL)
    target.popen.wait()
    after = None
    while after is None:
        rig.check_time("reading the state after a master kill")
        after = rig.snap()
    observed = _kill_phase(after)
    note = f"killed master pid {target.pid} in {after.state}"
    if observed == "master_kill_planning" and after.total("map") + after.total("reduce"):
        rig.result.problem("master killed mid-plan left a partial plan (chunks while planning)")
    if after.state in ("mapping", "reducing") and (after.total("map") + after.total("reduce") == 0):
        rig.result.problem(f"run is {after.state} without chunks after a master kill")
    rig.fired(f, observed, note)
    time.sleep(f.delay)
    # Restart it, as cron or an operator would (a no-op when the run already ended).
    rig.master_restarts.append((rig.master(), "after_kill"))


def _kill_phase(snap: Snap) -> str:
    """Which master-kill kind a kill was, judged from the frozen run after it."""
    if snap.state in (None, "planning"):
        return "master_kill_planning"
    if snap.state in TERMINAL:
        return "master_kill_finishing"
    if snap.unpublished > 0:
        return "master_kill_publish"
    phase = snap.phase
    if phase == "map":
        return "master_kill_map"
    if phase == "switch":
        return "master_kill_stage_switch"
    if phase == "finishing":
        return "master_kill_finishing"
    return "master_kill_reduce"


def _signal_worker(rig: Rig, f: Fault, snap: Snap) -> None:
    """SIGKILL (or SIGTERM) a worker holding a claim, or with variant "all" every
    worker at once; then start as many new ones."""
    victim = rig.victim(snap, f.stage)
    assert victim is not None
    if f.kind == "worker_term" and f.variant == "all":
        # a worker SIGTERMed before it installed its handlers dies of it (exit -15): a
        # replacement spawned by an earlier kill may still be starting on a busy machine
        rig.wait_started()
    victims = [victim]
    if f.variant == "all":
        victims += [w for w in rig.workers_alive() if w is not victim and not w.signalled]
    held = {w.pid: [c for pid, _, c in snap.claims if pid == w.pid] for w in victims}
    sig = signal.SIGKILL if f.kind == "worker_kill" else signal.SIGTERM
    for w in victims:
        w.signalled = sig.name
        os.kill(w.pid, sig)
    if f.kind == "worker_kill":
        for w in victims:
            w.popen.wait()
        after = None
        while after is None:
            rig.check_time("reading claims after SIGKILL")
            after = rig.snap(claims=True)
        owners = {pid for pid, _, _ in after.claims}
        mid = [w.pid for w in victims if w.pid in owners]
        observed = "worker_kill" if mid else "worker_kill_between_chunks"
        pids = ", ".join(str(w.pid) for w in victims)
        rig.fired(f, observed, f"pid {pids} in {f.stage}, {len(mid)} mid-chunk")
    else:
        codes = []
        for w in victims:
            rc = rig.wait_exit(w, 40)
            codes.append(rc)
            if rc is None:
                rig.result.problem(f"worker pid {w.pid} did not exit within 40s of SIGTERM")
            elif rc != 0:
                rig.result.problem(f"worker pid {w.pid} exited {rc} after SIGTERM")
        after = None
        while after is None:
            rig.check_time("reading claims after SIGTERM")
            after = rig.snap(claims=True)
        for w in victims:
            if any(pid == w.pid for pid, _, _ in after.claims):
                rig.result.problem(f"worker pid {w.pid} exited on SIGTERM holding a claim")
            _check_finished(rig, w, held[w.pid])
        pids = ", ".join(str(w.pid) for w in victims)
        rig.fired(f, "worker_term", f"pid {pids} in {f.stage}, exit {codes}")
    time.sleep(f.delay)
    for _ in victims:
        rig.worker()


def _check_finished(rig: Rig, victim: Proc, chunk_ids: list[int]) -> None:
    """A SIGTERMed worker finishes the chunk it holds (the grace period is ample)."""
    assert rig.engine is not None
    if not chunk_ids:
        return
    with rig.engine.connect() as conn:
        events = conn.execute(
            select(RunEvent.chunk_id, RunEvent.kind).where(
                RunEvent.chunk_id.in_(chunk_ids),
                RunEvent.actor.like(f"%:{victim.pid}:%"),
                RunEvent.kind.in_(("done", "released", "failed")),
            )
        ).all()
    done = {int(c) for c, k in events if k == "done"}
    for cid in chunk_ids:
        if cid not in done:
            kinds = [str(k) for c, k in events if c == cid] or ["nothing"]
            rig.result.problem(
                f"worker pid {victim.pid} got SIGTERM holding chunk {cid} and did not "
                f"finish it ({', '.join(kinds)})"
            )


def _restart_service(rig: Rig, f: Fault) -> None:
    rig.wait_started()
    service = SERVICE_OF[f.kind]
    rc, took = services_command("restart", service, rig.dir / "services.log")
    rig.result.restarts[service] = took
    if rc != 0:
        rig.result.problem(f"deploy/local/services restart {service} failed (exit {rc})")
    rig.fired(f, f.kind, f"{f.variant}, {took:.1f}s")


def _cancel(rig: Rig, f: Fault, snap: Snap) -> None:
    assert rig.engine is not None and snap.run_id is not None
    with rig.engine.begin() as conn:
        rig.cancelled = run_repo.request_cancel(conn, snap.run_id, "chaos")
    rig.fired(f, "cancel", f"in {snap.phase}" + ("" if rig.cancelled else " (run already ended)"))


def _outage(rig: Rig, f: Fault) -> None:
    """Stop MariaDB longer than the master's deadline: it must give up with one
    clear line (exit 3); then start MariaDB and a master, which finishes the run."""
    log = rig.dir / "services.log"
    rig.wait_started()
    masters = rig.masters_alive()
    rc, took = services_command("stop", "mariadb", log)
    if rc != 0:
        rig.result.problem(f"deploy/local/services stop mariadb failed (exit {rc})")
    limit = rig.plan.deadline_seconds + 40
    t0 = time.monotonic()
    for m in masters:
        left = max(0.1, limit - (time.monotonic() - t0))
        code = rig.wait_exit(m, left)
        if code is None:
            rig.result.problem(
                f"master pid {m.pid} still running {limit}s into a database outage longer "
                f"than its {rig.plan.deadline_seconds}s deadline"
            )
            continue
        line = m.last_error_line()
        waited = time.monotonic() - t0
        if code != 3 or "unavailable" not in line or "gave up" not in line:
            rig.result.problem(
                f"master pid {m.pid} exited {code} in a database outage, expected 3 with "
                f"'unavailable ... gave up': {line or m.stderr_text()[-300:]}"
            )
        for where in tracebacks(m.stderr_text()):
            rig.note_traceback(m, where)
        rig.log(f"master pid {m.pid} gave up after {waited:.1f}s: {line}")
    rc, _ = services_command("start", "mariadb", log)
    rig.outage_over = True
    down = time.monotonic() - t0 + took
    rig.result.restarts["mariadb(outage)"] = down
    if rc != 0:
        rig.result.problem(f"deploy/local/services start mariadb failed (exit {rc})")
    rig.fired(f, "outage_past_deadline", f"master gave up; database down {down:.1f}s")
    rig.master_restarts.append((rig.master(), "after_outage"))


def poison_rerun(rig: Rig) -> None:
    """After the poison run failed: the fix (workers that skip nothing), then --rerun."""
    rig.wait_started()
    for w in rig.workers_alive():
        w.signalled = "SIGTERM"
        w.popen.send_signal(signal.SIGTERM)
    for w in [p for p in rig.procs if p.role == "worker"]:
        if rig.wait_exit(w, 40) is None:
            rig.result.problem(f"worker pid {w.pid} did not stop within 40s of SIGTERM")
    rig.proc_env = dict(rig.proc_env, NIGHTFOLD_TEST_POISON_FIXED="1")
    rig.worker()
    rig.worker()
    rerun = rig.master("--rerun")
    while rerun.alive():
        rig.check_time("waiting for the rerun after the fix")
        time.sleep(0.1)
