"""A session: trials 0..N-1 with lead kinds dealt from a shuffled deck, then (cover
all) make-up trials for the kinds no trial managed to inject, within a trial and time
budget; a private HBase table prefix, dropped at the end; the JSON report written and
one summary line said."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightfold.common.urls import with_query
from tests.support.chaos.plan import KINDS, RESTARTS, TrialPlan, lead_deck, plan_trial
from tests.support.chaos.quiet import wait_for_quiet
from tests.support.chaos.report import build_report
from tests.support.chaos.result import TrialResult
from tests.support.chaos.rig import Env
from tests.support.chaos.trial import Trial
from tests.support.services import REPO, service_url, unique_name


@dataclass
class SessionConfig:
    trials: int = 20
    max_trials: int | None = None
    """With ``cover_all``: more trials until every kind was injected, up to this many."""
    cover_all: bool = True
    seed: int | None = None
    report: Path = REPO / ".nightfold" / "chaos-short.json"
    logs: Path | None = None
    rows: tuple[int, int] = (2000, 6000)
    keep_logs: bool = False
    only_trial: int | None = None
    only_lead: str | None = None
    time_budget: float | None = None
    """Stop adding make-up trials after this many seconds."""
    kinds: tuple[str, ...] = KINDS
    """The fault kinds of the session (all of them unless narrowed to chase a problem)."""
    quiet_wait: float = float(os.environ.get("NIGHTFOLD_CHAOS_QUIET_WAIT", "120"))
    """Before restarting a shared service, wait this long for others' tests to end."""


@dataclass
class SessionReport:
    data: dict[str, Any]
    results: list[TrialResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def resolve_seed(seed: int | None) -> int:
    if seed is not None:
        return seed
    env = os.environ.get("NIGHTFOLD_CHAOS_SEED")
    return int(env) if env else random.SystemRandom().randrange(1, 10**9)


def run_session(cfg: SessionConfig, say: Callable[[str], None] = print) -> SessionReport:
    seed = resolve_seed(cfg.seed)
    unknown = set(cfg.kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; kinds: {', '.join(KINDS)}")
    database_url = service_url("NIGHTFOLD_DATABASE_URL")
    broker_url = service_url("NIGHTFOLD_BROKER_URL")
    store_base = service_url("NIGHTFOLD_STORE_URL")
    if not (database_url and broker_url and store_base):
        raise RuntimeError("the services are not configured: run `make services-up` first")
    prefix = unique_name("chaos")
    logs = cfg.logs or REPO / ".nightfold" / "chaos" / f"{time.strftime('%Y%m%d-%H%M%S')}-{seed}"
    logs.mkdir(parents=True, exist_ok=True)
    env = Env(
        database_url=database_url,
        broker_url=broker_url,
        store_url=with_query(store_base, table_prefix=prefix),
        logs=logs,
        keep_logs=cfg.keep_logs,
    )
    say(f"chaos: NIGHTFOLD_CHAOS_SEED={seed} (replay the session with it), logs in {logs}")
    started = time.monotonic()
    results: list[TrialResult] = []
    covered: Counter[str] = Counter()
    try:
        if cfg.only_trial is not None:
            lead = cfg.only_lead or lead_deck(seed, cfg.only_trial + 1, cfg.kinds)[cfg.only_trial]
            plans: Iterator[TrialPlan] = iter(
                [plan_trial(seed, cfg.only_trial, lead, rows=cfg.rows, kinds=cfg.kinds)]
            )
        else:
            plans = _plans(seed, cfg, covered, started)
        narrowed = "" if cfg.kinds == KINDS else f" --kinds {','.join(cfg.kinds)}"
        for plan in plans:
            if any(f.kind in RESTARTS or f.kind == "outage_past_deadline" for f in plan.faults):
                wait_for_quiet(cfg.quiet_wait, say)
            say(f"chaos: {plan.describe()}")
            result = Trial(plan, env, say).run()
            results.append(result)
            covered.update(result.faults_by_kind())
            verdict = "ok" if result.ok else "UNEXPECTED"
            say(
                f"chaos: trial {plan.index} {verdict} in {result.seconds:.1f}s: "
                f"{result.outcome}, injected {dict(result.faults_by_kind())}"
                + (f"; problems: {result.problems}" if result.problems else "")
                + (f"; replay: {plan.replay()}{narrowed}" if not result.ok else "")
            )
    finally:
        _drop_prefix(store_base, prefix)
    wall = time.monotonic() - started
    data = build_report(seed, results, wall, logs)
    cfg.report.parent.mkdir(parents=True, exist_ok=True)
    cfg.report.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    say(
        f"chaos: {data['trials']} trials in {wall:.0f}s, {data['runs_as_expected']}/"
        f"{data['runs_total']} runs as expected, rows lost {data['rows_lost']}, counted twice "
        f"{data['rows_double_counted']}, stale cells {data['stale_cells']} (rows "
        f"{data['stale_rows']}), recovery p50 {data['recovery_s_p50']}s max "
        f"{data['recovery_s_max']}s; report {cfg.report}"
    )
    return SessionReport(data, results)


def _plans(
    seed: int, cfg: SessionConfig, covered: Counter[str], started: float
) -> Iterator[TrialPlan]:
    for i, lead in enumerate(lead_deck(seed, cfg.trials, cfg.kinds)):
        yield plan_trial(seed, i, lead, rows=cfg.rows, kinds=cfg.kinds)
    if not cfg.cover_all:
        return
    index = cfg.trials
    limit = cfg.max_trials if cfg.max_trials is not None else cfg.trials * 2
    while index < limit:
        if cfg.time_budget is not None and time.monotonic() - started > cfg.time_budget:
            return
        missing = [k for k in cfg.kinds if covered[k] == 0]
        if not missing:
            return
        yield plan_trial(seed, index, missing[0], rows=cfg.rows, kinds=cfg.kinds)
        index += 1


def _drop_prefix(store_base: str, prefix: str) -> None:
    import happybase

    from nightfold.common.store import HBaseURL, parse_store_url

    spec = parse_store_url(store_base)
    assert isinstance(spec, HBaseURL)
    with suppress(Exception):
        conn = happybase.Connection(spec.host, spec.port, table_prefix=prefix, timeout=60_000)
        try:
            for table in conn.tables():
                conn.delete_table(table, disable=True)
        finally:
            conn.close()
