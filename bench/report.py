"""Gather the benchmarks' results: ``bench/results/summary.json``, the results
table in ``bench/README.md`` (between the ``results`` markers; the rest of the
README is kept) and the plots (throughput against workers, chunk timelines).

    python -m bench.report
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, git_commit, git_dirty, log, read_result

README = REPO / "bench" / "README.md"
START = "<!-- results:start (written by `python -m bench.report`) -->"
END = "<!-- results:end -->"

SUMMARY_KEYS = (
    "overhead_ratio",
    "plan_growth_ratio",
    "plan_share",
    "speedup_2_workers",
    "speedup_2_workers_embedded",
    "dispatch_chunks_per_s",
    "claims_per_s",
    "claim_p99_ms",
    "db_statements_per_chunk",
    "claims_per_s_64",
    "mariadb_ceiling_per_s_64",
    "claims_per_s_256",
    "mariadb_ceiling_per_s_256",
    "claim_p99_ms_256",
    "fleet_workers_fed",
    "recovery_s",
    "chunks_redone",
    "worker_kill_recovery_s",
    "celery_wall_ratio",
    "celery_exact_after_kill",
    "nightfold_exact_after_kill",
    "worker_peak_rss_mib",
    "worker_peak_rss_mib_4x_chunk",
    "master_peak_rss_mib",
    "skew_ratio",
    "skew_longest_over_median",
    "resume_redo_fraction",
    "resume_checkpoint_rows",
    "hot_worker_peak_rss_mib",
    "uniform_worker_peak_rss_mib",
    "hot_wall_ratio",
    "hot_exact",
    "sketch_within_bounds",
    "rows",
    "commit",
)


def _get(doc: dict[str, Any] | None, key: str) -> Any:
    return None if doc is None else doc.get(key)


def collect() -> dict[str, dict[str, Any] | None]:
    names = (
        "overhead",
        "scaling",
        "coordinator",
        "statements",
        "fleet",
        "recovery",
        "worker_kill",
        "celery_compare",
        "memory",
        "skew",
        "resume",
        "console",
        "plan",
        "hot",
    )
    return {n: read_result(n) for n in (*names, "profile", "run_all")}


def summary(results: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    o, s, c = results["overhead"], results["scaling"], results["coordinator"]
    r, cel, m = results["recovery"], results["celery_compare"], results["memory"]
    out: dict[str, Any] = {
        "overhead_ratio": _get(o, "overhead_ratio"),
        "plan_growth_ratio": _get(results["plan"], "plan_growth_ratio"),
        "plan_share": _get(o, "plan_share"),
        "speedup_2_workers": _get(s, "speedup_2_workers"),
        "speedup_2_workers_embedded": _get(s, "speedup_2_workers_embedded"),
        "dispatch_chunks_per_s": _get(c, "dispatch_chunks_per_s"),
        "claims_per_s": _get(c, "claims_per_s"),
        "claim_p99_ms": _get(c, "claim_p99_ms"),
        "db_statements_per_chunk": _get(results["statements"], "db_statements_per_chunk"),
        "claims_per_s_64": _get(c, "claims_per_s_64"),
        "mariadb_ceiling_per_s_64": _get(c, "mariadb_ceiling_per_s_64"),
        "claims_per_s_256": _get(c, "claims_per_s_256"),
        "mariadb_ceiling_per_s_256": _get(c, "mariadb_ceiling_per_s_256"),
        "claim_p99_ms_256": _get(c, "claim_p99_ms_256"),
        "fleet_workers_fed": _get(results["fleet"], "fleet_workers_fed"),
        "recovery_s": _get(r, "recovery_s"),
        "chunks_redone": _get(r, "chunks_redone"),
        "worker_kill_recovery_s": _get(results["worker_kill"], "worker_kill_recovery_s"),
        "celery_wall_ratio": _get(cel, "celery_wall_ratio"),
        "celery_exact_after_kill": _get(cel, "celery_exact_after_kill"),
        "nightfold_exact_after_kill": _get(cel, "nightfold_exact_after_kill"),
        "worker_peak_rss_mib": _get(m, "worker_peak_rss_mib") or _get(o, "worker_peak_rss_mib"),
        "worker_peak_rss_mib_4x_chunk": _get(m, "worker_peak_rss_mib_4x_chunk")
        or _get(o, "worker_peak_rss_mib_4x_chunk"),
        "master_peak_rss_mib": _get(m, "master_peak_rss_mib") or _get(c, "master_peak_rss_mib"),
        "skew_ratio": _get(results["skew"], "skew_ratio"),
        "skew_longest_over_median": _get(results["skew"], "skew_longest_over_median"),
        "resume_redo_fraction": _get(results["resume"], "resume_redo_fraction"),
        "resume_checkpoint_rows": _get(results["resume"], "resume_checkpoint_rows"),
        "hot_worker_peak_rss_mib": _get(results["hot"], "hot_worker_peak_rss_mib"),
        "uniform_worker_peak_rss_mib": _get(results["hot"], "uniform_worker_peak_rss_mib"),
        "hot_wall_ratio": _get(results["hot"], "hot_wall_ratio"),
        "hot_exact": _get(results["hot"], "hot_exact"),
        "sketch_within_bounds": _get(results["hot"], "sketch_within_bounds"),
        "rows": _get(o, "rows") or _get(s, "rows"),
        "commit": git_commit(),
    }
    assert tuple(out) == SUMMARY_KEYS
    console = results.get("console")
    extra = {
        "dirty": git_dirty(),
        "claim_p50_ms": _get(c, "claim_p50_ms"),
        "db_statements_per_chunk_alone": _get(
            results["statements"], "db_statements_per_chunk_alone"
        ),
        "db_statements_per_chunk_before": _get(
            results["statements"], "db_statements_per_chunk_before"
        ),
        "db_round_trips_per_chunk": _get(results["statements"], "db_round_trips_per_chunk"),
        "claims_to_ceiling_64": _get(c, "claims_to_ceiling_64"),
        "claims_per_s_64_single": _get(c, "claims_per_s_64_single"),
        "fleet_idle_fraction_1024": _get(results["fleet"], "fleet_idle_fraction_1024"),
        "fleet_workers_coordinator_model": _get(
            results["fleet"], "fleet_workers_coordinator_model"
        ),
        "fleet_coordinator_cpu_ms_per_chunk": _get(
            results["fleet"], "fleet_coordinator_cpu_ms_per_chunk"
        ),
        "worker_kill_recovery_max_s": _get(results["worker_kill"], "worker_kill_recovery_max_s"),
        "celery_exact_after_child_kill": _get(cel, "celery_exact_after_child_kill"),
        "run_page_30k_s": _get(console, "run_page_30k_s"),
        "run_page_30k_cpu_s": _get(console, "run_page_30k_cpu_s"),
        "run_page_30k_browser_s": _get(console, "run_page_30k_browser_s"),
        "targets": {**targets(out), "run_page_30k_s < 2": _console_target(console)},
        "bench_wall_s": _get(results["run_all"], "wall_s"),
        "results_commits": sorted({d["commit"] for d in results.values() if d and "commit" in d}),
    }
    return {**out, **extra}


def _console_target(console: dict[str, Any] | None) -> bool | None:
    """The web console's run page of 30,000 chunks: under 2 s, served and in chromium."""
    if console is None or console.get("run_page_30k_s") is None:
        return None
    browser = console.get("run_page_30k_browser_s") or 0.0
    return bool(console["run_page_30k_s"] < 2 and browser < 2)


def targets(s: dict[str, Any]) -> dict[str, Any]:
    def check(value: Any, ok: Any) -> bool | None:
        return None if value is None else bool(ok(value))

    return {
        "overhead_ratio <= 1.05": check(s["overhead_ratio"], lambda v: v <= 1.05),
        "plan_growth_ratio <= 1.5": check(s["plan_growth_ratio"], lambda v: v <= 1.5),
        "plan_share <= 0.05": check(s["plan_share"], lambda v: v <= 0.05),
        "dispatch_chunks_per_s >= 5000": check(s["dispatch_chunks_per_s"], lambda v: v >= 5000),
        "claim_p99_ms <= 20": check(s["claim_p99_ms"], lambda v: v <= 20),
        "db_statements_per_chunk <= 3.5 (half of 7)": check(
            s["db_statements_per_chunk"], lambda v: v <= 3.5
        ),
        "claims_per_s_64 >= 1116 (3 x 372)": check(s["claims_per_s_64"], lambda v: v >= 1116),
        "claim_p99_ms at 64 <= 50": check(s["claim_p99_ms"], lambda v: v <= 50),
        "fleet_workers_fed >= 1024": check(s["fleet_workers_fed"], lambda v: v >= 1024),
        "recovery_s <= 5": check(s["recovery_s"], lambda v: v <= 5),
        "chunks_redone == 0": check(s["chunks_redone"], lambda v: v == 0),
        "worker_kill_recovery_s <= 10": check(s["worker_kill_recovery_s"], lambda v: v <= 10),
        "celery_wall_ratio >= 1.2": check(s["celery_wall_ratio"], lambda v: v >= 1.2),
        "worker_peak_rss_mib <= 256 (both chunk sizes)": check(
            s["worker_peak_rss_mib"],
            lambda v: max(v, s["worker_peak_rss_mib_4x_chunk"] or 0) <= 256,
        ),
        "master_peak_rss_mib <= 200": check(s["master_peak_rss_mib"], lambda v: v <= 200),
        "skew_ratio <= 1.15": check(s["skew_ratio"], lambda v: v <= 1.15),
        "skew_longest_over_median <= 2": check(s["skew_longest_over_median"], lambda v: v <= 2),
        "resume_redo_fraction <= 0.15": check(s["resume_redo_fraction"], lambda v: v <= 0.15),
        "hot_worker_peak_rss_mib <= 256 and <= 1.5x uniform": check(
            s["hot_worker_peak_rss_mib"],
            lambda v: v <= 256 and v <= 1.5 * (s["uniform_worker_peak_rss_mib"] or 0),
        ),
        "hot_wall_ratio <= 1.3": check(s["hot_wall_ratio"], lambda v: v <= 1.3),
        "hot_exact": check(s["hot_exact"], lambda v: v is True),
        "sketch_within_bounds": check(s["sketch_within_bounds"], lambda v: v is True),
    }


# -- the fleet estimate ---------------------------------------------------------------------


def fleet_estimate(results: dict[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    """How many workers one master and one MariaDB can keep busy.

    A worker asks the coordinator for one claim + one complete per chunk (plus a
    heartbeat every lease/4, negligible at chunk times of seconds). A fleet of N
    workers each taking ``t`` seconds per chunk needs N / t claims/s and the
    master must publish N / t hints/s, so N_max = min(claims/s, dispatch/s) * t.
    """
    o, s, c = results["overhead"], results["scaling"], results["coordinator"]
    if not (o and c):
        return None
    runs = o["nightfold_runs"]
    chunk_s = sum(r["map_s"] for r in runs) / sum(r["map_chunks"] for r in runs)
    claim = c["claim"]
    claims_per_s = c["claims_per_s"]
    dispatch_per_s = c["dispatch_chunks_per_s"]
    db_ms = claim.get("mariadb_cpu_ms_per_claim")
    here = min(claims_per_s, dispatch_per_s) * chunk_s
    out = {
        "chunk_seconds_1_worker": round(chunk_s, 2),
        "claims_per_s": claims_per_s,
        "dispatch_chunks_per_s": dispatch_per_s,
        "fleet_here": int(here),
        "mariadb_cpu_ms_per_claim": db_ms,
    }
    if db_ms:
        # a dedicated 16-core MariaDB spending all its CPU on claims and completions
        out["claims_per_s_16_core_db"] = int(16 * 1000 / db_ms)
        out["fleet_16_core_db"] = int(min(16 * 1000 / db_ms, dispatch_per_s) * chunk_s)
    if s:
        out["scaling_speedup_2_workers"] = s["speedup_2_workers"]
    return out


# -- the plots ---------------------------------------------------------------------------------


def plot_throughput(results: dict[str, dict[str, Any] | None], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, o, cel = results["scaling"], results["overhead"], results["celery_compare"]
    if not s:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, style in (("hbase", "nightfold, real services", "o-"), ("embedded", "", "s--")):
        series = s[key]["rows_per_s"]
        xs = sorted(int(k) for k in series)
        ys = [series[str(x)] / 1000 for x in xs]
        label = label or f"nightfold, embedded ({s['embedded_rows']:,} rows)"
        ax.plot(xs, ys, style, label=label)
    if o:
        bare = [b["rows"] / b["wall_s"] / 1000 for b in o["bare_runs"]]
        ax.axhline(sum(bare) / len(bare), color="grey", ls=":", label="bare loop (1 process)")
    if cel:
        rows = cel["rows"]
        c = [rows / r["wall_s"] / 1000 for r in cel["celery_runs"]]
        ax.plot([cel["workers"]], [sum(c) / len(c)], "x", ms=10, color="C3", label="Celery chord")
    ax.set_xlabel("worker processes (2-core machine, shared with the services)")
    ax.set_ylabel("thousand rows/s (whole run, median)")
    ax.set_xticks([1, 2])
    ax.set_ylim(bottom=0)
    ax.set_title(f"Throughput against workers ({s['rows']:,} rows, one day)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_timeline(results: dict[str, dict[str, Any] | None], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o, s = results["overhead"], results["scaling"]
    panels = []
    if o and o.get("timeline"):
        panels.append(("1 worker (overhead run)", o["timeline"]))
    if s and s["hbase"].get("timeline_2_workers"):
        panels.append(("2 workers (scaling run)", s["hbase"]["timeline_2_workers"]))
    if not panels:
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 + 1.6 * len(panels)), squeeze=False)
    for ax, (title, chunks) in zip(axes[:, 0], panels, strict=True):
        workers = sorted({c["worker"] for c in chunks})
        for c in chunks:
            if math.isnan(c["start"]) or math.isnan(c["end"]):
                continue
            lane = workers.index(c["worker"])
            color = "C0" if c["stage"] == "map" else "C1"
            shade = 0.85 if c["idx"] % 2 == 0 else 0.55
            ax.barh(lane, c["end"] - c["start"], left=c["start"], color=color, alpha=shade)
        ax.set_yticks(range(len(workers)), [f"worker {w}" for w in workers])
        ax.set_title(f"Chunk timeline, {title}: map (blue), reduce (orange)", fontsize=9)
        ax.set_xlabel("seconds since the run was created (planning first)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- the README table ----------------------------------------------------------------------------


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}{unit}" if value < 100 else f"{value:,.0f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _met(flag: bool | None) -> str:
    return "—" if flag is None else ("met" if flag else "**missed**")


def _hot_day(hot: dict[str, Any]) -> str:
    sizes = hot.get("sizes")
    if not sizes:
        return "not measured"
    return (
        f"{sizes['rows']:,} rows, one merchant with {hot.get('hot_distinct_customers', 0):,} "
        f"customers over {sizes['hot_products']:,} products"
    )


def table(summary_doc: dict[str, Any], results: dict[str, dict[str, Any] | None]) -> str:
    t = summary_doc["targets"]
    s = summary_doc
    c = results["coordinator"] or {}
    cel = results["celery_compare"] or {}
    wk = results["worker_kill"] or {}
    sk = results["skew"] or {}
    rs = results["resume"] or {}
    p = results["plan"] or {}
    est = p.get("estimate_1b_rows_256_regions") or {}

    def ms(key: str, digits: int) -> str:
        return _fmt(None if p.get(key) is None else round(1000 * p[key], digits), " ms")

    first_1b, guided_1b = est.get("first_night_plan_s"), est.get("guideposts_plan_s")
    guided_sharded_1b = est.get("guideposts_sharded_job_plan_s")
    hot = results["hot"] or {}
    rows = [
        ("1", "overhead: nightfold (1 worker) / bare loop, wall", _fmt(s["overhead_ratio"], "x"),
         "<= 1.05x", _met(t["overhead_ratio <= 1.05"])),
        ("1", "planning, share of nightfold's wall (first night: no guideposts)",
         _fmt(None if s["plan_share"] is None else round(100 * s["plan_share"], 1), " %"),
         "<= 5 %", _met(t["plan_share <= 0.05"])),
        ("8", f"plan time, {_fmt(p.get('rows_big'))} / {_fmt(p.get('rows_small'))} rows "
         f"({_fmt(p.get('regions'))} regions), worse of first night and guideposts",
         _fmt(s["plan_growth_ratio"], "x"), "<= 1.5x", _met(t["plan_growth_ratio <= 1.5"])),
        ("8", "... per probe / per region listed",
         f"{ms('per_probe_s', 2)} / {ms('per_region_s', 3)}", "", ""),
        ("8", "... estimated plan, 1B rows on 256 regions: first night / guideposts "
              "(a sharded job such as merchant_daily: guideposts plus probes)",
         f"{_fmt(first_1b, ' s')} / {_fmt(guided_1b, ' s')} ({_fmt(guided_sharded_1b, ' s')})",
         "", ""),
        ("2", "speed-up, 2 workers / 1 (real services)", _fmt(s["speedup_2_workers"], "x"),
         "", ""),
        ("2", "speed-up, 2 workers / 1 (embedded)", _fmt(s["speedup_2_workers_embedded"], "x"),
         "", ""),
        ("3", "plan + record + publish 100k chunks", _fmt(s["dispatch_chunks_per_s"], " chunks/s"),
         ">= 5,000/s", _met(t["dispatch_chunks_per_s >= 5000"])),
        ("3", "claim + complete, 64 claimers on MariaDB", _fmt(s["claims_per_s"], " claims/s"),
         "", ""),
        ("3", "claim latency p50 / p99",
         f"{_fmt(c.get('claim_p50_ms'), ' ms')} / {_fmt(s['claim_p99_ms'], ' ms')}",
         "p99 <= 20 ms", _met(t["claim_p99_ms <= 20"])),
        ("17", "statements per chunk: claim + heartbeat + complete (batch of 8 / alone / before)",
         f"{_fmt(s['db_statements_per_chunk'])} / "
         f"{_fmt(summary_doc.get('db_statements_per_chunk_alone'))} / "
         f"{_fmt(summary_doc.get('db_statements_per_chunk_before'))}",
         "<= 3.5", _met(t["db_statements_per_chunk <= 3.5 (half of 7)"])),
        ("17", "claim + complete, 64 claimers, worker's batched path / one-by-one",
         f"{_fmt(s['claims_per_s_64'], '/s')} / {_fmt(c.get('claims_per_s_64_single'), '/s')}",
         ">= 1,116/s", _met(t["claims_per_s_64 >= 1116 (3 x 372)"])),
        ("17", "MariaDB's ceiling, 64 connections: bare conditional UPDATE + COMMIT",
         _fmt(s["mariadb_ceiling_per_s_64"], "/s"), "", ""),
        ("17", "claim p99 at 64 claimers", _fmt(s["claim_p99_ms"], " ms"), "<= 50 ms",
         _met(t["claim_p99_ms at 64 <= 50"])),
        ("17", "256 claimers: batched / ceiling, claim p99",
         f"{_fmt(s['claims_per_s_256'], '/s')} / {_fmt(s['mariadb_ceiling_per_s_256'], '/s')}, "
         f"p99 {_fmt(s['claim_p99_ms_256'], ' ms')}", "", ""),
        ("17", "largest simulated fleet <= 5% idle at 2 s chunks (idle at 1,024)",
         f"{_fmt(s['fleet_workers_fed'])} ({_fmt(summary_doc.get('fleet_idle_fraction_1024'))})",
         ">= 1,024", _met(t["fleet_workers_fed >= 1024"])),
        ("17", "coordinator CPU per chunk (master + MariaDB + RabbitMQ) -> workers on 2 cores",
         f"{_fmt(summary_doc.get('fleet_coordinator_cpu_ms_per_chunk'), ' ms')} -> "
         f"{_fmt(summary_doc.get('fleet_workers_coordinator_model'))}", "", ""),
        ("4", "master SIGKILLed mid-map: restart -> progress", _fmt(s["recovery_s"], " s"),
         "<= 5 s", _met(t["recovery_s <= 5"])),
        ("4", "chunks redone after the master's restart", _fmt(s["chunks_redone"]), "0",
         _met(t["chunks_redone == 0"])),
        ("4", "worker SIGKILLed mid-chunk: kill -> chunk claimed again, p50 / max (lease 60 s)",
         f"{_fmt(s['worker_kill_recovery_s'], ' s')} / "
         f"{_fmt(wk.get('worker_kill_recovery_max_s'), ' s')}",
         "<= 10 s", _met(t["worker_kill_recovery_s <= 10"])),
        ("5", "Celery chord wall / nightfold wall (2 workers)", _fmt(s["celery_wall_ratio"], "x"),
         ">= 1.2x", _met(t["celery_wall_ratio >= 1.2"])),
        ("5", "exact summaries after a worker SIGKILL: nightfold",
         _fmt(s["nightfold_exact_after_kill"]), "", ""),
        ("5", "exact summaries after a worker SIGKILL: Celery (acks_late)",
         _fmt(s["celery_exact_after_kill"]), "", ""),
        ("5", "... Celery, only the pool child SIGKILLed",
         _fmt(cel.get("celery_exact_after_child_kill")), "", ""),
        ("6", "worker peak RSS, default chunk (50k rows)", _fmt(s["worker_peak_rss_mib"], " MiB"),
         "<= 256 MiB", _met(t["worker_peak_rss_mib <= 256 (both chunk sizes)"])),
        ("6", "worker peak RSS, 4x chunk (200k rows)",
         _fmt(s["worker_peak_rss_mib_4x_chunk"], " MiB"), "<= 256 MiB", ""),
        ("6", "master peak RSS, 100k chunks planned and published",
         _fmt(s["master_peak_rss_mib"], " MiB"), "<= 200 MiB",
         _met(t["master_peak_rss_mib <= 200"])),
        ("15", f"skewed day (30% one merchant) / uniform day, wall, 2 workers{_sk(sk)}",
         _fmt(s["skew_ratio"], "x"), "<= 1.15x", _met(t["skew_ratio <= 1.15"])),
        ("15", "skewed day: longest map chunk / median, rows, after splitting",
         _fmt(s["skew_longest_over_median"], "x"), "<= 2x",
         _met(t["skew_longest_over_median <= 2"])),
        ("15", "... with splitting off: wall ratio / longest over median",
         f"{_fmt(sk.get('skew_ratio_no_split'), 'x')} / "
         f"{_fmt(sk.get('skew_longest_over_median_no_split'), 'x')}", "", ""),
        ("15", "worker SIGKILLed at 90% of a chunk: rows re-read by the taker / chunk rows"
         f"{_rs(rs)}", _fmt(s["resume_redo_fraction"]), "<= 0.15",
         _met(t["resume_redo_fraction <= 0.15"])),
        ("15", "... without checkpoints (as before)",
         _fmt(rs.get("resume_redo_fraction_no_checkpoint")), "", ""),
        ("9", "console: a run page of 30,000 chunks, wall (its CPU) / in chromium",
         f"{_fmt(s.get('run_page_30k_s'), ' s')} ({_fmt(s.get('run_page_30k_cpu_s'), ' s')}) / "
         f"{_fmt(s.get('run_page_30k_browser_s'), ' s')}",
         "< 2 s", _met(t.get("run_page_30k_s < 2"))),
        ("16", f"hot day ({_hot_day(hot)}), 2 workers: every worker's peak RSS / uniform day",
         f"{_fmt(s['hot_worker_peak_rss_mib'], ' MiB')} / "
         f"{_fmt(s['uniform_worker_peak_rss_mib'], ' MiB')}",
         "<= 256 MiB and <= 1.5x", _met(t["hot_worker_peak_rss_mib <= 256 and <= 1.5x uniform"])),
        ("16", "hot day wall / uniform day wall (same rows)", _fmt(s["hot_wall_ratio"], "x"),
         "<= 1.3x", _met(t["hot_wall_ratio <= 1.3"])),
        ("16", "hot day exact (verify, merchant_daily)", _fmt(s["hot_exact"]), "yes",
         _met(t["hot_exact"])),
        ("16", "sketched example within its bounds on the hot day (distinct customers: "
              f"{_fmt(hot.get('sketch_hot_distinct_rel_error'))} relative error)",
         _fmt(s["sketch_within_bounds"]), "yes", _met(t["sketch_within_bounds"])),
    ]  # fmt: skip
    lines = [
        "| # | figure | value | target | |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {a} | {b} | {v} | {tg} | {m} |" for a, b, v, tg, m in rows),
    ]
    return "\n".join(lines)


def _sk(sk: dict[str, Any]) -> str:
    """Where the skew figures come from, when measured."""
    if not sk:
        return ""
    return (
        f" ({sk['rows']:,} rows{', quick' if sk.get('quick') else ''}, map "
        f"{sk.get('skew_map_ratio', '?')}x, reduce {sk.get('skew_reduce_ratio', '?')}x, "
        f"{sk['backend']})"
    )


def _rs(rs: dict[str, Any]) -> str:
    if not rs:
        return ""
    return (
        f" ({rs['chunk_rows']:,}-row chunk, checkpoint every {rs['resume_checkpoint_rows']:,} rows)"
    )


def results_section(summary_doc: dict[str, Any], results: dict[str, dict[str, Any] | None]) -> str:
    run_all = results["run_all"] or {}
    wall = run_all.get("wall_s")
    head = (
        f"Measured at commit `{summary_doc['commit'][:12]}`"
        + (" (with uncommitted changes)" if summary_doc.get("dirty") else "")
        + f" on {summary_doc['rows'] or 0:,} rows"
        + (f"; `make bench` took {wall / 60:.1f} min" if wall else "")
        + (
            f" (load average {run_all['loadavg_start']} at the start)"
            if run_all.get("loadavg_start") is not None
            else ""
        )
        + "."
    )
    parts = [head, "", table(summary_doc, results), ""]
    fleet = fleet_estimate(results)
    if fleet:
        parts += [
            "Fleet estimate (computed from the figures above, see *The coordinator's ceiling*):",
            "",
            f"- one map chunk (50k rows) takes a worker about {fleet['chunk_seconds_1_worker']} s;",
            f"- as measured here: min({fleet['claims_per_s']:,} claims/s, "
            f"{fleet['dispatch_chunks_per_s']:,} hints/s) x {fleet['chunk_seconds_1_worker']} s "
            f"= about **{fleet['fleet_here']:,} workers**;",
        ]
        if fleet.get("fleet_16_core_db"):
            parts.append(
                f"- MariaDB spent {fleet['mariadb_cpu_ms_per_claim']} ms of CPU per claim + "
                f"complete, so a dedicated 16-core MariaDB could serve about "
                f"{fleet['claims_per_s_16_core_db']:,} claims/s: about "
                f"**{fleet['fleet_16_core_db']:,} workers** (then the dispatch rate binds)."
            )
        parts.append("")
    parts += [
        "Plots: [throughput against workers](results/throughput.png), "
        "[chunk timelines](results/timeline.png). Raw figures: `results/*.json`.",
        "",
        "![throughput against workers](results/throughput.png)",
        "",
        "![chunk timelines](results/timeline.png)",
    ]
    return "\n".join(parts)


def write_readme(section: str) -> None:
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    README.write_text(f"{before}{START}\n{section}\n{END}{after}")


def run() -> dict[str, Any]:
    results = collect()
    doc = summary(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot_throughput(results, RESULTS / "throughput.png")
    plot_timeline(results, RESULTS / "timeline.png")
    write_readme(results_section(doc, results))
    log("wrote bench/results/summary.json, bench/README.md and the plots")
    return doc


if __name__ == "__main__":
    run()
