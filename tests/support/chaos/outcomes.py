"""What each scenario expects of a trial's runs: which run is the day's last, the
state it must end in, the master exit codes that are fine, and the scenario's own
checks of the runs before it (a poison run failed with its reason, a rejecting store
failed the run with the HBase reason, a stranded day was resumed by the next night)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from nightfold.common.db.models import RunEvent
from tests.support.chaos import nightly, rejects
from tests.support.chaos.plan import NIGHTLY
from tests.support.chaos.rig import Rig


@dataclass
class Expected:
    last: Any
    """The day's last run (id, state, error, rows_read, generation, day)."""
    final: str = "succeeded"
    ok_codes: frozenset[int] = frozenset({0})


def expectations(rig: Rig, runs: list[Any]) -> Expected:
    """The scenario's expectations; runs before the last one are checked here."""
    p, r = rig.plan, rig.result
    day_runs = [row for row in runs if row[5] == p.day] or runs
    out = Expected(last=day_runs[-1])
    rejected = any(f.fired for f in p.faults if f.kind == "store_rejects")
    if p.scenario == "poison" or (p.scenario == "store_rejects" and rejected):
        first = runs[0]
        reason = str(first[2] or "")
        if p.scenario == "poison":
            want = f"dead after {p.max_attempts} attempts"
            if str(first[1]) == "failed" and want in reason and "poison row" in reason:
                r.runs_as_expected += 1
            else:
                r.problem(f"poison run ended {first[1]} ({reason!r}), expected failed: {want}")
            _check_poison_events(rig, int(first[0]))
        elif rejects.check(rig, int(first[0]), str(first[1]), reason):
            r.runs_as_expected += 1
        out.ok_codes = frozenset({0, 6})
        if len(runs) != 2:
            r.problem(f"expected the failed run and its rerun, found {len(runs)} runs")
    elif p.scenario == "rerun_changed_raw" and r.scenario_done:
        if len(runs) != 2:
            r.problem(f"expected the run and its --rerun, found {len(runs)} runs")
        elif str(runs[0][1]) == "succeeded":
            r.runs_as_expected += 1
    elif p.scenario == "cancel" and rig.cancelled:
        out.final, out.ok_codes = "cancelled", frozenset({6})
    elif p.scenario == "outage_past_deadline":
        out.ok_codes = frozenset({0, 3})
    elif p.scenario in NIGHTLY and any(f.fired for f in p.faults if f.kind in NIGHTLY):
        nightly.check(rig, [(int(x[0]), x[5].isoformat(), str(x[1]), x[2]) for x in runs])
        others = [x for x in runs if x[5] != p.day]
        r.runs_as_expected += sum(1 for x in others if str(x[1]) == "succeeded")
    return out


def _check_poison_events(rig: Rig, run_id: int) -> None:
    assert rig.engine is not None
    with rig.engine.connect() as conn:
        kinds = Counter(
            str(k)
            for (k,) in conn.execute(
                select(RunEvent.kind).where(
                    RunEvent.run_id == run_id, RunEvent.kind.in_(("failed", "dead"))
                )
            )
        )
    want = Counter(failed=rig.plan.max_attempts - 1, dead=1)
    if kinds != want:
        rig.result.problem(f"poison run events {dict(kinds)}, expected {dict(want)}")
