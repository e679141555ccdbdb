"""The fault kinds of a map chunk's segments and splits (issue 15): a worker killed
while it splits its chunk, killed right after a checkpoint (before its next lease
beat), and a split racing a takeover (the owner frozen with a split requested,
its chunk taken over, then thawed). Their trials run a paced map
(``tests.support.jobs``: ``paced_daily``) with small batches, checkpoints and
split thresholds, so chunks live for seconds and hold several segments.

Nothing here needs a check of its own: whatever instant a worker dies or wakes,
the trial's usual checks must hold (no row lost or counted twice against the
oracle, ``verify``, no chunk done twice). What is checked here is only what the
fault itself promises: the split the frozen owner was asked for is refused once
its chunk is taken over (no ``split`` event of its attempt after the takeover)."""

from __future__ import annotations

import os
import random
import signal
import time

from sqlalchemy import select, true

from nightfold.common.db import segments as segment_repo
from nightfold.common.db.models import Chunk, RunEvent, Segment
from tests.support.chaos.observe import Snap
from tests.support.chaos.plan import SEGMENTS, Fault
from tests.support.chaos.procs import Proc
from tests.support.chaos.rig import Rig

MAP_SLEEP = "0.05"
"""Seconds the paced map sleeps per scan batch (of 20 rows: 400 rows/s, so a chunk of
500-1500 rows lasts seconds)."""


def env(chunk_rows: int) -> dict[str, str]:
    """What a segments trial's processes run with."""
    return {
        "NIGHTFOLD_JOB_MODULES": "tests.support.jobs",
        "NIGHTFOLD_TEST_MAP_SLEEP": MAP_SLEEP,
        "NIGHTFOLD_SCAN_BATCH": "20",
        "NIGHTFOLD_CHECKPOINT_ROWS": str(max(20, chunk_rows // 5)),
        "NIGHTFOLD_SPLIT_MIN_ROWS": str(max(20, chunk_rows // 10)),
    }


def fire(rig: Rig, f: Fault, snap: Snap) -> None:
    assert f.kind in SEGMENTS
    if f.kind == "kill_in_split":
        _kill_in_split(rig, f, snap)
    elif f.kind == "kill_after_checkpoint":
        _kill_after_checkpoint(rig, f)
    else:
        _split_vs_takeover(rig, f, snap)


def _claim_of(rig: Rig, snap: Snap) -> tuple[Proc, int] | None:
    """A live, unsignalled worker holding a map claim, and the chunk."""
    mine = {p.pid: p for p in rig.workers_alive() if not p.signalled}
    for pid, stage, chunk_id in snap.claims:
        if stage == "map" and pid in mine:
            return mine[pid], chunk_id
    return None


def _attempt(rig: Rig, chunk_id: int) -> tuple[int, str, int, int]:
    """(attempt, state, split_state, committed segments) of a chunk now."""
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        a, st, split, seq = conn.execute(
            select(Chunk.attempt, Chunk.state, Chunk.split_state, Chunk.next_seq).where(
                Chunk.id == chunk_id
            )
        ).one()
    return int(a), str(st), int(split), int(seq)


def _request_split(rig: Rig, snap: Snap, chunk_id: int) -> bool:
    assert rig.engine is not None and snap.run_id is not None
    with rig.engine.begin() as conn:
        return segment_repo.request_split(conn, snap.run_id, chunk_id, "chaos")


def _sigkill(rig: Rig, victim: Proc) -> None:
    victim.signalled = "SIGKILL"
    os.kill(victim.pid, signal.SIGKILL)
    victim.popen.wait()


KILL_IN_SPLIT_TRIES = 5
"""Running chunks :func:`_kill_in_split` goes for before it settles for a plain kill."""


def _kill_in_split(rig: Rig, f: Fault, snap: Snap) -> None:
    """Ask the owner of a running chunk to split, and SIGKILL it at a random instant of
    the next second or so: before its beat sees the request, while it probes for the
    cut, or just after the split committed. Which one it was is read from the chunk.

    A chunk that ends before the request lands (or in the instant before the kill: a
    loaded machine makes chunks short next to that second) is left alone and the next
    running one is asked, up to ``KILL_IN_SPLIT_TRIES``; only then is the last victim
    killed as a plain ``worker_kill``. (Killing at the first miss made the kind
    depend on the machine's load: a CI fault session once injected none.)"""
    assert rig.engine is not None
    pause = random.Random(f"{rig.plan.seed}:{f.kind}")
    for attempt_no in range(KILL_IN_SPLIT_TRIES):
        last_try = attempt_no + 1 == KILL_IN_SPLIT_TRIES
        if attempt_no:
            fresh = rig.snap(claims=True)
            if fresh is None:
                continue
            snap = fresh
        found = _claim_of(rig, snap)
        if found is None:
            if attempt_no == 0:
                f.missed = True
                return
            break
        victim, chunk_id = found
        attempt, _, _, _ = _attempt(rig, chunk_id)
        asked = _request_split(rig, snap, chunk_id)
        time.sleep(pause.uniform(0.0, 1.2))
        now, state, _, _ = _attempt(rig, chunk_id)
        ended = not asked or state != "claimed" or now != attempt
        if ended and not last_try and not _split_of(rig, chunk_id, attempt):
            continue  # the chunk ended first: ask the next running one
        _sigkill(rig, victim)
        _, state, split_state, _ = _attempt(rig, chunk_id)
        if _split_of(rig, chunk_id, attempt):
            observed, when = "kill_in_split", "after the split committed"
        elif asked and split_state == segment_repo.SPLIT_REQUESTED and state == "claimed":
            observed, when = "kill_in_split", "with the split asked, not committed"
        else:  # the chunk ended before the request landed: a plain kill
            observed, when = "worker_kill", "the split request came too late"
        rig.fired(f, observed, f"pid {victim.pid}, chunk {chunk_id} attempt {attempt}: {when}")
        time.sleep(f.delay)
        rig.worker()
        return
    f.missed = True


def _split_of(rig: Rig, chunk_id: int, attempt: int) -> bool:
    """Whether the chunk's attempt ``attempt`` committed a split."""
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        return (
            conn.execute(
                select(RunEvent.id).where(
                    RunEvent.chunk_id == chunk_id,
                    RunEvent.kind == "split",
                    RunEvent.attempt == attempt,
                )
            ).first()
            is not None
        )


def _kill_after_checkpoint(rig: Rig, f: Fault) -> None:
    """Watch the segments table; the moment a live worker commits a segment of a chunk
    it still holds, SIGKILL it (a checkpoint moved the lease; no beat came after)."""
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        seen = {int(i) for (i,) in conn.execute(select(Segment.id))}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rig.check_time("waiting for a checkpoint")
        with rig.engine.connect() as conn:
            fresh = conn.execute(
                select(Segment.id, Segment.chunk_idx, Segment.attempt, Chunk.owner, Chunk.id)
                .join(Chunk, (Chunk.run_id == Segment.run_id) & (Chunk.idx == Segment.chunk_idx))
                .where(
                    Segment.id.notin_(seen) if seen else true(),
                    Chunk.stage == "map",
                    Chunk.state == "claimed",
                    Chunk.attempt == Segment.attempt,
                )
            ).all()
        alive = {p.pid: p for p in rig.workers_alive() if not p.signalled}
        for seg_id, idx, attempt, owner, chunk_id in fresh:
            parts = (owner or "").split(":")
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if pid in alive:
                _sigkill(rig, alive[pid])
                rig.fired(
                    f,
                    "kill_after_checkpoint",
                    f"pid {pid} right after segment {seg_id} of map[{idx}] (chunk {chunk_id}) "
                    f"attempt {attempt}",
                )
                time.sleep(f.delay)
                rig.worker()
                return
        seen |= {int(s) for s, *_ in fresh}
        time.sleep(0.004)
    f.missed = True


def _split_vs_takeover(rig: Rig, f: Fault, snap: Snap) -> None:
    """Ask the owner of a running chunk to split, freeze it (SIGSTOP) a moment later --
    before its beat, or while it looks for the cut --, wait until its chunk is taken
    over, thaw it (SIGCONT). The woken owner's split must fail its fence."""
    assert rig.engine is not None
    found = _claim_of(rig, snap)
    if found is None:
        f.missed = True
        return
    victim, chunk_id = found
    attempt, _, _, _ = _attempt(rig, chunk_id)
    _request_split(rig, snap, chunk_id)
    time.sleep(random.Random(f"{rig.plan.seed}:{f.kind}").uniform(0.0, 0.8))
    victim.signalled = "SIGSTOP"
    os.kill(victim.pid, signal.SIGSTOP)
    taken = False
    deadline = time.monotonic() + 3 * rig.plan.lease_seconds + 15
    while time.monotonic() < deadline:
        rig.check_time("waiting for a takeover of a frozen owner")
        now, state, _, _ = _attempt(rig, chunk_id)
        if now != attempt or state != "claimed":
            taken = True
            break
        time.sleep(0.05)
    with rig.engine.connect() as conn:
        before = conn.execute(
            select(RunEvent.id)
            .where(RunEvent.chunk_id == chunk_id, RunEvent.attempt == attempt)
            .order_by(RunEvent.id.desc())
        ).first()
        segments_before = conn.execute(select(Segment.id).order_by(Segment.id.desc())).first()
    os.kill(victim.pid, signal.SIGCONT)
    victim.signalled = ""
    time.sleep(max(1.0, rig.plan.lease_seconds / 2))  # it wakes, beats or splits: refused
    with rig.engine.connect() as conn:
        late = conn.execute(
            select(RunEvent.kind).where(
                RunEvent.chunk_id == chunk_id,
                RunEvent.attempt == attempt,
                RunEvent.actor.like(f"%:{victim.pid}:%"),
                RunEvent.id > (before[0] if before else 0),
                RunEvent.kind.in_(("split", "split_declined", "done")),
            )
        ).all()
        idx = conn.execute(select(Chunk.idx).where(Chunk.id == chunk_id)).scalar_one()
        late_segments = conn.execute(
            select(Segment.seq).where(
                Segment.chunk_idx == idx,
                Segment.attempt == attempt,
                Segment.id > (segments_before[0] if segments_before else 0),
            )
        ).all()
    if taken and late_segments:
        rig.result.problem(
            f"worker pid {victim.pid} committed segments {[s for (s,) in late_segments]} of "
            f"chunk {chunk_id} attempt {attempt} after the chunk was taken over"
        )
    if taken and late:
        rig.result.problem(
            f"worker pid {victim.pid} wrote {[k for (k,) in late]} for chunk {chunk_id} "
            f"attempt {attempt} after the chunk was taken over (the fence let it through)"
        )
    if not taken:
        rig.result.problem(f"chunk {chunk_id} of frozen worker pid {victim.pid} not taken over")
    rig.fired(f, f.kind, f"pid {victim.pid} frozen, chunk {chunk_id} attempt {attempt}")
