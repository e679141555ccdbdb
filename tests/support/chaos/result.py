"""What one trial found: its outcome, problems (a trial not as expected) and anomalies
(reported, not failing it), row counts against the oracle, recovery times; and its
entry in the JSON report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.support.chaos.plan import TrialPlan


@dataclass
class TrialResult:
    plan: TrialPlan
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    outcome: str = ""
    runs_total: int = 0
    runs_as_expected: int = 0
    rows_expected: int = 0
    rows_lost: int = 0
    rows_double_counted: int = 0
    chunks_done_twice: int = 0
    stale_rows: int = 0
    """Summary rows of the day stored but not in the oracle (after a rerun)."""
    stale_cells: int = 0
    """Summary cells stored but not in the oracle (stale rows' cells included)."""
    defects: Counter[str] = field(default_factory=Counter)
    """Scenario checks that failed, by what they catch (``failure``)."""
    scenario_done: bool = False
    """The scenario's own step happened (e.g. rerun_changed_raw changed the raw rows)."""
    recoveries: list[float] = field(default_factory=list)
    recovery_causes: list[str] = field(default_factory=list)
    takeovers: list[float] = field(default_factory=list)
    restarts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    logs: str = ""

    def problem(self, text_: str) -> None:
        self.ok = False
        self.problems.append(text_)

    def failure(self, tag: str, text_: str) -> None:
        """A problem a scenario exists to catch, counted under ``tag`` in the report."""
        self.defects[tag] += 1
        self.problem(text_)

    def faults_by_kind(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        if self.plan.scenario == "poison":
            counts["poison"] += 1
        if self.plan.scenario == "rerun_changed_raw" and self.scenario_done:
            counts["rerun_changed_raw"] += 1
        for f in self.plan.faults:
            if f.fired and f.observed:
                counts[f.observed] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        return {
            "trial": self.plan.index,
            "seed": self.plan.seed,
            "lead": self.plan.lead,
            "scenario": self.plan.scenario,
            "faults": [
                {
                    "kind": f.kind,
                    "observed": f.observed or None,
                    "fired": f.fired,
                    "missed": f.missed,
                    **({"variant": f.variant} if f.variant else {}),
                    **({"note": f.note} if f.note else {}),
                }
                for f in self.plan.faults
            ],
            "outcome": self.outcome,
            "ok": self.ok,
            "rows": self.rows_expected,
            "rows_lost": self.rows_lost,
            "rows_double_counted": self.rows_double_counted,
            "stale_rows": self.stale_rows,
            "stale_cells": self.stale_cells,
            **({"defects": dict(self.defects)} if self.defects else {}),
            "recovery_s": [round(r, 3) for r in self.recoveries],
            "seconds": round(self.seconds, 1),
            **({"problems": self.problems} if self.problems else {}),
            **({"anomalies": self.anomalies} if self.anomalies else {}),
            **({"logs": self.logs} if self.logs else {}),
        }
