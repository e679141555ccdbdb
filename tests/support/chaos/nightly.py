"""The nightly scenarios: a master that nobody restarts, healed by the next night.

- ``master_never_restarted``: the master is SIGKILLed mid-map and not restarted. The
  workers finish the chunks they were given and the run stays ``mapping``; within a
  bounded time ``nightfold status --json`` says the run is stalled and names the dead
  master's owner.
- ``reboot_loses_wrapper``: as after a reboot, the master, whatever would restart it
  (the harness restarts no master for this fault) and every worker are SIGKILLed; fresh
  workers start.

Then, as the next night would, only the plain relative command runs:
``NIGHTFOLD_TODAY=<day + 2> master run --day yesterday`` (so ``yesterday`` is the day
after the trial's; ``plan.NIGHTLY_BASE_DAY`` keeps that day free). It must first
resume the stranded day, which must succeed, exact, and then run its own day."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

from tests.support.chaos.observe import Snap
from tests.support.chaos.plan import NIGHTLY, Fault
from tests.support.chaos.procs import Proc
from tests.support.chaos.rig import Rig
from tests.support.services import REPO

DRAIN_BOUND = 40.0
"""Seconds for the workers to finish the chunks they hold once the master is gone."""
STALL_GRACE = 25.0
"""Seconds past master_stale_seconds for ``status`` to say stalled."""


def fire(rig: Rig, f: Fault, snap: Snap) -> None:
    """SIGKILL every master (and for a reboot every worker); restart none of them."""
    rig.dead_owner = snap.owner
    victims = list(rig.masters_alive())
    if f.kind == "reboot_loses_wrapper":
        victims += rig.workers_alive()
    for p in victims:
        p.signalled = "SIGKILL"
        os.kill(p.pid, signal.SIGKILL)
    for p in victims:
        p.popen.wait()
    pids = ", ".join(f"{p.role} {p.pid}" for p in victims)
    rig.fired(f, f.kind, f"SIGKILLed {pids} in {snap.phase}; owner {snap.owner}")


def follow_up(rig: Rig) -> None:
    fault = next((f for f in rig.plan.faults if f.kind in NIGHTLY), None)
    if fault is None or not fault.fired:
        return
    if fault.kind == "master_never_restarted":
        _drain(rig)
        _expect_stalled(rig)
    else:
        rig.worker()
        rig.worker()
    night = rig.plan.next_night.isoformat()
    nightly = rig.spawn(
        "master",
        "master",
        "run",
        "--day",
        "yesterday",
        env=dict(rig.proc_env, NIGHTFOLD_TODAY=night),
    )
    rig.log(f"next night (NIGHTFOLD_TODAY={night}): master run --day yesterday")
    _wait_exit(rig, nightly, "the next night's master run --day yesterday")


def _wait_exit(rig: Rig, proc: Proc, what: str) -> None:
    while proc.alive():
        rig.check_time(f"waiting for {what}")
        time.sleep(0.1)


def _drain(rig: Rig) -> None:
    """Wait (bounded) until no chunk is claimed: the workers finished what they held."""
    t0 = time.monotonic()
    snap = None
    while time.monotonic() - t0 < DRAIN_BOUND:
        rig.check_time("waiting for the workers to finish their chunks")
        snap = rig.snap(claims=True)
        if snap is not None and not snap.claims:
            break
        time.sleep(0.2)
    state = snap.state if snap else None
    held = len(snap.claims) if snap else "?"
    rig.log(f"without a master after {time.monotonic() - t0:.1f}s: run {state}, {held} claims")
    if state != "mapping":
        rig.result.problem(f"master_never_restarted: run is {state} without a master")


def status_json(rig: Rig) -> dict[str, object]:
    """The trial's day as ``nightfold status --json --day D`` shows it."""
    out = subprocess.run(
        [sys.executable, "-m", "nightfold", "status", "--json", "--day", rig.plan.day.isoformat()],
        env=rig.proc_env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"status --json exited {out.returncode}: {out.stderr[-300:]}")
    data = json.loads(out.stdout)
    runs = data.get("runs") or [{}]
    return dict(runs[0])


def _expect_stalled(rig: Rig) -> None:
    """``status --json`` says stalled, naming the dead master, within the bound."""
    stale = float(rig.proc_env.get("NIGHTFOLD_MASTER_STALE_SECONDS", "10"))
    bound = stale + STALL_GRACE
    t0 = time.monotonic()
    run: dict[str, object] = {}
    while time.monotonic() - t0 < bound:
        rig.check_time("waiting for status to say stalled")
        try:
            run = status_json(rig)
        except Exception as exc:
            rig.log(f"status --json: {type(exc).__name__}: {exc}")
            time.sleep(1)
            continue
        if run.get("stalled") is True:
            break
        time.sleep(1)
    took = time.monotonic() - t0
    (rig.dir / "status.json").write_text(json.dumps(run, indent=2, default=str) + "\n")
    if run.get("stalled") is not True:
        rig.result.failure(
            "stall_not_reported",
            f"master_never_restarted: `status --json` did not say stalled within {bound:.0f}s "
            f"of the master's SIGKILL (run {run.get('state')}, stalled={run.get('stalled')!r}, "
            f"master={run.get('master')!r})",
        )
        return
    master = json.dumps(run.get("master"), default=str)
    if not rig.dead_owner or rig.dead_owner not in master:
        rig.result.problem(
            f"master_never_restarted: status says stalled but its master {master} does not "
            f"name the dead owner {rig.dead_owner!r}"
        )
    rig.log(f"status said stalled after {took:.1f}s: master {master}")


def check(rig: Rig, runs: list[tuple[int, str, str, str]]) -> None:
    """(id, day, state, error) of every run: the stranded day was resumed and succeeded
    (the run's final state is checked by ``checks``); the next night's day ran too."""
    day, after = rig.plan.day.isoformat(), rig.plan.day + dt.timedelta(days=1)
    mine = [r for r in runs if r[1] == day]
    if mine and mine[-1][2] != "succeeded":
        rig.result.failure(
            "stranded_day_not_resumed",
            f"the next night's `master run --day yesterday` did not resume {day}: run "
            f"{mine[-1][0]} is still {mine[-1][2]}",
        )
    theirs = [r for r in runs if r[1] == after.isoformat()]
    if not theirs or theirs[-1][2] != "succeeded":
        state = theirs[-1][2] if theirs else "never created"
        rig.result.problem(f"the next night's own day {after} ended {state}")
