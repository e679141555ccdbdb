"""The store_rejects scenario: HBase ANSWERS every write of a stage with an error.

When the run reaches the stage, the table it writes (the summary table in reduce, the
partials table in map) is replaced by one without its column family, so each put gets
``NoSuchColumnFamilyException`` back at once: a deterministic store error, not an
outage. (``disable_table`` is no such error through the Thrift gateway: its client
retries the closed regions and the put hangs past the socket timeout, which looks
like an outage.) Expected: every attempt counts, each chunk is dead after
``max_attempts`` claims (no claim/release loop), the run ends ``failed`` with the
HBase reason within a bounded time; then the table is restored and ``--rerun``
succeeds and verifies."""

from __future__ import annotations

import re
import time
from collections import Counter

import happybase
from sqlalchemy import select

from nightfold.common.db.clock import db_now
from nightfold.common.db.models import Chunk, RunEvent
from nightfold.common.jobs import get_job
from nightfold.common.keys import PARTIAL_FAMILY, PARTIALS_TABLE
from nightfold.common.store import HBaseURL, open_store, parse_store_url
from tests.support.chaos.observe import Snap
from tests.support.chaos.plan import TERMINAL, Fault
from tests.support.chaos.rig import Rig

HBASE_REASON = "NoSuchColumnFamily"
HBASE_REASONS = (HBASE_REASON, "TableNotEnabled", "TableNotFound")
"""What HBase answers: the missing family, or (a write that falls in the instants
while the table is being replaced: disabled, dropped, not created yet) the disabled
or missing table -- all deterministic refusals of the injected fault."""


MISSING_TABLE = re.compile(
    r"RetriesExhaustedWithDetailsException: Failed \d+ actions?: [^\s.:]+: \d+ times?"
)
"""HBase's client on a put into a table dropped a moment before: its cause is a
TableNotFoundException, whose message is only the table's name, so the answer reads
"Failed 2 actions: <table>: 2 times, servers with issues: null" and names no exception
(seen in a chaos trial whose write fell between the drop and the re-creation)."""


def names_the_refusal(reason: str) -> bool:
    """Whether a failed run's reason is HBase's answer to the injected fault."""
    return any(r in reason for r in HBASE_REASONS) or MISSING_TABLE.search(reason) is not None


TOO_LATE = "store_rejects too late"
"""The observed kind of a rejection injected after the stage's last claim: the run
rightly succeeded (its writes were all in), and only the rerun is judged."""


def fail_bound(rig: Rig) -> float:
    """How long the run may take to fail once the store rejects: each attempt fails at
    once, so a few republish rounds per attempt are ample."""
    return 30.0 + rig.plan.max_attempts * (rig.plan.lease_seconds + 8)


def _target(rig: Rig, f: Fault) -> tuple[str, str]:
    if f.variant == "partials":
        return PARTIALS_TABLE, PARTIAL_FAMILY
    job = get_job(rig.plan.job)
    return job.summary_table, job.summary_family


def _connection(rig: Rig) -> happybase.Connection:
    spec = parse_store_url(rig.env.store_url)
    assert isinstance(spec, HBaseURL)
    return happybase.Connection(
        spec.host, spec.port, table_prefix=spec.table_prefix, timeout=60_000
    )


def _replace_table(rig: Rig, table: str, family: str | None) -> None:
    """Drop ``table``; recreate it without its family (``family=None``: as nightfold
    creates it, so the rest of the session finds it as before)."""
    conn = _connection(rig)
    try:
        if table.encode() in conn.tables():
            conn.delete_table(table, disable=True)
        if family is None:
            conn.create_table(table, {"x_not_a_family": {"max_versions": 1}})
    finally:
        conn.close()
    if family is not None:
        store = open_store(rig.env.store_url)
        try:
            store.ensure_table(table, [family])
        finally:
            store.close()


def fire(rig: Rig, f: Fault, snap: Snap) -> None:
    """Make the store reject the stage's writes, wait (bounded) for the run to fail,
    check the claims, restore the table."""
    table, family = _target(rig, f)
    stage = "map" if f.variant == "partials" else "reduce"
    if snap.total(stage) and snap.counts.get((stage, "done"), 0) == snap.total(stage):
        rig.log(f"store_rejects not injected: every {stage} chunk was already done")
        return
    _replace_table(rig, table, None)
    since = _db_now(rig)
    t0 = time.monotonic()
    rig.fired(f, "store_rejects", f"{table} has no family {family!r} from {snap.phase}")
    bound = fail_bound(rig)
    state = snap.state
    try:
        while time.monotonic() - t0 < bound:
            rig.check_time("waiting for the run to fail on a rejecting store")
            now = rig.snap()
            state = now.state if now is not None else state
            if state in TERMINAL or not rig.masters_alive():
                break
            time.sleep(0.2)
        took = time.monotonic() - t0
        if state == "succeeded" and not _claimed_since(rig, snap.run_id, stage, since):
            # every chunk of the stage was claimed (and so wrote) before the table changed;
            # the --rerun that follows must still rebuild what the replacement dropped
            f.observed = TOO_LATE
            rig.log(f"store_rejects came too late: no {stage} chunk was claimed after it")
        elif state in TERMINAL:
            rig.log(f"run ended {state} {took:.1f}s after the store began rejecting")
        else:
            rig.result.failure(
                "store_error_not_failing_run",
                f"store_rejects: run still {state} {took:.0f}s after every write to {table} "
                f"got {HBASE_REASON} (bound {bound:.0f}s): the answered store error did "
                "not fail the run",
            )
        _check_claims(rig, snap.run_id)
    finally:
        _replace_table(rig, table, family)
        rig.log(f"{table} restored")


def _db_now(rig: Rig) -> object:
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        return conn.execute(select(db_now())).scalar_one()  # microseconds, as events have


def _claimed_since(rig: Rig, run_id: int | None, stage: str, since: object) -> bool:
    """Whether a chunk of ``stage`` was claimed at or after ``since`` (database clock)."""
    assert rig.engine is not None and run_id is not None
    with rig.engine.connect() as conn:
        return (
            conn.execute(
                select(RunEvent.id)
                .join(Chunk, Chunk.id == RunEvent.chunk_id)
                .where(
                    RunEvent.run_id == run_id,
                    RunEvent.kind == "claimed",
                    RunEvent.at >= since,
                    Chunk.stage == stage,
                )
                .limit(1)
            ).first()
            is not None
        )


def _check_claims(rig: Rig, run_id: int | None) -> None:
    """No chunk of the run is claimed more than max_attempts times."""
    assert rig.engine is not None and run_id is not None
    with rig.engine.connect() as conn:
        claims = Counter(
            int(c)
            for (c,) in conn.execute(
                select(RunEvent.chunk_id).where(
                    RunEvent.run_id == run_id, RunEvent.kind == "claimed"
                )
            )
        )
    m = rig.plan.max_attempts
    loops = {c: n for c, n in claims.items() if n > m}
    if loops:
        worst = max(loops.values())
        rig.result.failure(
            "claim_release_loop",
            f"store_rejects: {len(loops)} chunks claimed more than max_attempts={m} times "
            f"(up to {worst}): a claim/release loop",
        )


def follow_up(rig: Rig) -> None:
    """After the failed run: ``--rerun`` (the table is restored), which must succeed."""
    if not any(f.fired for f in rig.plan.faults if f.kind == "store_rejects"):
        return
    rerun = rig.master("--rerun")
    while rerun.alive():
        rig.check_time("waiting for the rerun after the store was restored")
        time.sleep(0.1)


def check(rig: Rig, run_id: int, state: str, reason: str) -> bool:
    """The first run failed with the HBase reason and its dead chunks used every attempt."""
    m = rig.plan.max_attempts
    if state == "succeeded" and any(f.observed == TOO_LATE for f in rig.plan.faults):
        return True
    if state != "failed" or not names_the_refusal(reason):
        rig.result.problem(
            f"store_rejects run ended {state} ({reason[:200]!r}), expected failed naming "
            f"{' or '.join(HBASE_REASONS)}"
        )
        return False
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        dead = conn.execute(
            select(Chunk.idx, Chunk.stage, Chunk.attempt).where(
                Chunk.run_id == run_id, Chunk.state == "dead"
            )
        ).all()
    if not dead:
        rig.result.problem("store_rejects run failed with no dead chunk")
        return False
    short = [f"{s}[{i}]: {a}" for i, s, a in dead if a != m]
    if short:
        rig.result.problem(f"store_rejects: dead chunks with attempt != {m}: {short[:5]}")
        return False
    return True
