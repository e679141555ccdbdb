"""The rerun_changed_raw scenario: once the trial's run succeeded, the day's raw rows
change (every row of one merchant deleted, another merchant's rows made malformed,
maybe a new merchant's rows added) and ``master run --day D --rerun`` runs with the
workers, sometimes with the master or a worker SIGKILLed during the rerun's reduce.
The checks then hold the rerun to the new rows: rows lost or counted twice against
the oracle, and no stale cell (``stale``): the day's summary rows are exactly the
new generation's."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import defaultdict

import happybase

from nightfold.common.jobs import get_job
from nightfold.common.keys import SEP, day_ranges, raw_key
from nightfold.common.store import HBaseURL, open_store, parse_store_url
from nightfold.common.store.base import Row
from tests.support.chaos.rig import Rig

BAD_AMOUNT = b"not-cents"


def _rows_by_merchant(rig: Rig) -> dict[bytes, list[Row]]:
    p = rig.plan
    job = get_job(p.job)
    store = open_store(rig.env.store_url)
    by: dict[bytes, list[Row]] = defaultdict(list)
    try:
        for key_range in day_ranges(p.day, p.salt_buckets):
            for key, cells in store.scan(job.raw_table, key_range):
                # the row's group as the job tells it: the key's merchant, else the column
                parts = key.split(SEP)
                merchant = parts[2] if len(parts) == 4 and all(parts) else b""
                merchant = merchant or cells.get(b"o:merchant", b"")
                if merchant:
                    by[merchant].append((key, dict(cells)))
    finally:
        store.close()
    return by


def change_raw(rig: Rig) -> None:
    """Delete one merchant's rows, make another's malformed, maybe add a new one's."""
    p, r = rig.plan, rig.result
    rng = random.Random(f"{p.seed}:rerun_changed_raw")
    by = _rows_by_merchant(rig)
    # among the 20 busiest merchants, so that the change moves many cells
    merchants = sorted(sorted(by, key=lambda m: (-len(by[m]), m))[:20])
    if len(merchants) < 2:
        rig.log("rerun_changed_raw: fewer than two merchants, nothing changed")
        return
    gone, broken = rng.sample(merchants, 2)
    added: list[tuple[bytes, dict[bytes, bytes]]] = []
    if rng.random() < 0.5:
        template = dict(by[broken][0][1])
        new = f"m9{rng.randrange(10**5):05d}"
        for i in range(rng.randint(5, 40)):
            order = f"chaos{i:06d}"
            cells = {**template, b"o:merchant": new.encode()}
            added.append((raw_key(i % p.salt_buckets, p.day, new, order), cells))
    spec = parse_store_url(rig.env.store_url)
    assert isinstance(spec, HBaseURL)
    conn = happybase.Connection(
        spec.host, spec.port, table_prefix=spec.table_prefix, timeout=60_000
    )
    try:
        with conn.table(get_job(p.job).raw_table).batch(batch_size=500) as batch:
            for key, _ in by[gone]:
                batch.delete(key)
            for key, _ in by[broken]:
                batch.put(key, {b"o:amount_cents": BAD_AMOUNT})
            for key, cells in added:
                batch.put(key, cells)
    finally:
        conn.close()
    before = r.rows_expected
    r.rows_expected = before - len(by[gone]) + len(added)
    r.scenario_done = True
    rig.log(
        f"raw rows changed: {gone.decode()} deleted ({len(by[gone])} rows), "
        f"{broken.decode()} malformed ({len(by[broken])} rows), {len(added)} rows added; "
        f"{before} -> {r.rows_expected} rows"
    )


def follow_up(rig: Rig) -> None:
    """After the first run: change the raw rows, then ``--rerun`` (with a kill)."""
    assert rig.engine is not None
    first = rig.snap()
    if first is None or first.state != "succeeded":
        rig.log(f"rerun_changed_raw: the first run ended {first and first.state}; no rerun")
        return
    change_raw(rig)
    rig.master("--rerun")
    kill = rig.plan.rerun_kill
    while rig.masters_alive():
        rig.check_time("waiting for the rerun of the changed day")
        if kill:
            snap = rig.snap(claims=True)
            if snap is not None and snap.run_id != first.run_id and snap.phase == "reduce":
                _kill_in_reduce(rig, kill, snap.owner_pid, snap.claims)
                kill = ""
        time.sleep(0.02 if kill else 0.1)


def _kill_in_reduce(
    rig: Rig, who: str, owner: int | None, claims: list[tuple[int, str, int]]
) -> None:
    if who == "master":
        target = next((m for m in rig.masters_alive() if m.pid == owner), None)
        if target is None:
            return
        target.signalled = "SIGKILL"
        os.kill(target.pid, signal.SIGKILL)
        target.popen.wait()
        rig.log(f"rerun: killed master pid {target.pid} in reduce; restarting it")
        rig.master()  # cron's retry: the plain command resumes the rerun's generation
        return
    held = {pid for pid, stage, _ in claims if stage == "reduce"}
    victim = next((w for w in rig.workers_alive() if w.pid in held and not w.signalled), None)
    if victim is None:
        return
    victim.signalled = "SIGKILL"
    os.kill(victim.pid, signal.SIGKILL)
    victim.popen.wait()
    rig.log(f"rerun: killed worker pid {victim.pid} holding a reduce chunk")
    rig.worker()
