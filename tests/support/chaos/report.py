"""The session's JSON report (``bench/results/chaos.json`` for ``make chaos``): totals
over the trials, faults by kind, rows lost or counted twice, recovery and service
restart times, and each trial's summary."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.chaos.plan import KINDS
from tests.support.chaos.recovery import RECOVERY_DEFINITION
from tests.support.chaos.result import TrialResult


def build_report(seed: int, results: list[TrialResult], wall: float, logs: Path) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for r in results:
        faults.update(r.faults_by_kind())
        missed.update(f.kind for f in r.plan.faults if f.missed)
    recoveries = sorted(x for r in results for x in r.recoveries)
    takeovers = sorted(x for r in results for x in r.takeovers)
    restarts: dict[str, list[float]] = {}
    for r in results:
        for service, took in r.restarts.items():
            restarts.setdefault(service, []).append(took)
    return {
        "seed": seed,
        "replay": f"NIGHTFOLD_CHAOS_SEED={seed} (one trial: python -m tests.support.chaos "
        f"--seed {seed} --trial N --lead KIND)",
        "trials": len(results),
        "trials_as_expected": sum(r.ok for r in results),
        "faults_by_kind": dict(sorted(faults.items())),
        "faults_total": sum(faults.values()),
        "faults_planned_but_missed": dict(sorted(missed.items())),
        "kinds_not_covered": [k for k in KINDS if faults[k] == 0],
        "runs_total": sum(r.runs_total for r in results),
        "runs_as_expected": sum(r.runs_as_expected for r in results),
        "rows_seeded": sum(r.rows_expected for r in results),
        "rows_lost": sum(r.rows_lost for r in results),
        "rows_double_counted": sum(r.rows_double_counted for r in results),
        "chunks_done_twice": sum(r.chunks_done_twice for r in results),
        "stale_rows": sum(r.stale_rows for r in results),
        "stale_cells": sum(r.stale_cells for r in results),
        "scenario_failures": dict(sum((r.defects for r in results), Counter()).most_common()),
        "recovery_s_p50": round(statistics.median(recoveries), 3) if recoveries else None,
        "recovery_s_max": round(max(recoveries), 3) if recoveries else None,
        "recovery_samples": len(recoveries),
        "recovery_s_by_cause": {
            cause: {
                "samples": len(xs),
                "p50": round(statistics.median(xs), 3),
                "max": round(max(xs), 3),
            }
            for cause in ("after_kill", "after_outage")
            if (
                xs := [
                    x
                    for r in results
                    for x, c in zip(r.recoveries, r.recovery_causes, strict=True)
                    if c == cause
                ]
            )
        },
        "recovery_definition": RECOVERY_DEFINITION,
        "takeover_s_p50": round(statistics.median(takeovers), 3) if takeovers else None,
        "service_restart_s": {
            s: {"count": len(v), "p50": round(statistics.median(v), 1), "max": round(max(v), 1)}
            for s, v in sorted(restarts.items())
        },
        "wall_s": round(wall, 1),
        "trial_s_p50": round(statistics.median(r.seconds for r in results), 1) if results else None,
        "outcomes": dict(Counter(r.outcome for r in results)),
        "unexpected": [r.summary() for r in results if not r.ok],
        "anomalies": dict(Counter(a for r in results for a in r.anomalies).most_common()),
        "trials_with_anomalies": [r.plan.index for r in results if r.anomalies],
        "logs": str(logs),
        "trial_details": [r.summary() for r in results],
    }
