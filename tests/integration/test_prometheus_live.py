"""A real Prometheus (Debian's, own port, own TSDB in tmp) scrapes a live master, two
workers and a real Pushgateway during a run (on both backends), with the repo's
alert rules loaded and the repo's scrape jobs:

- while the master waits for workers, every alert expression evaluates, the rules are
  healthy, ``NightfoldDayLate`` fires for the day (its deadline is long past), and the
  dashboard's chunk panels show the database's counts, not twice them (the master's
  gauges arrive both by scrape and by push);
- after the run, the late alert has resolved, and every query of the Grafana dashboard,
  its variables filled in, returns data.
"""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import Engine

from tests.support import promql
from tests.support.pipeline import PIPELINE_DAY as DAY
from tests.support.pipeline import Cluster, chunk_counts, run_state, wait_for
from tests.support.prometheus import prometheus
from tests.support.scrape import free_port, serving

# merchant_daily whose map lasts (0.4 s a scan batch of 1,000 rows: 2 s a chunk), so each
# worker is scraped at its primed zeros before its first chunk ends: a worker that ended
# its chunks before Prometheus first saw it shows no increase, and histogram_quantile of
# no increase is NaN (the whole night could fit between two 1 s scrapes, and did in CI).
JOB = "slow_daily"
DASHBOARD = promql.DASHBOARDS / "nightfold.json"


def fill(expr: str, window: str) -> str:
    """The dashboard's variables as Grafana fills them for this run."""
    expr = re.sub(r"\$\{?__(rate_interval|range|interval)\}?", window, expr)
    return expr.replace("$nightfold_job", JOB).replace("$day", DAY)


@pytest.mark.parametrize("rows", [60_000])
def test_live_prometheus_evaluates_rules_and_dashboard(
    cluster: Cluster, db: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = time.time()
    mport, wports = free_port(), [free_port(), free_port()]
    targets = {
        "nightfold-master": [f"127.0.0.1:{mport}"],
        "nightfold-worker": [f"127.0.0.1:{p}" for p in wports],
    }
    with prometheus(tmp_path_factory.mktemp("prometheus"), targets) as prom:
        cluster.env.update(
            NIGHTFOLD_CHUNK_ROWS="5000",
            NIGHTFOLD_PUSH_INTERVAL_SECONDS="1",
            NIGHTFOLD_DEADLINE="07:00",  # due 2026-11-23 07:00 UTC: long past
            NIGHTFOLD_JOB_MODULES="tests.support.jobs",
            NIGHTFOLD_SCAN_BATCH="1000",
            NIGHTFOLD_TEST_SLOW_BATCH_SECONDS="0.4",
        )
        # Given a master serving and pushing its metrics, waiting for workers
        master = cluster.master(
            DAY, "--job", JOB, "--metrics-port", str(mport),
            "--pushgateway-url", prom.pushgateway_url,
        )  # fmt: skip
        wait_for(lambda: run_state(db) == "mapping" and serving(mport), 120, "master metrics")
        prom.wait("the master scraped", 'up{job="nightfold-master"} == 1')
        prom.wait("the master's push", 'nightfold_run_state{job="nightfold_master"} == 1')
        # Then the late-day alert fires for this job and day
        prom.wait("NightfoldDayLate", 'ALERTS{alertname="NightfoldDayLate", alertstate="firing"}')
        (late,) = prom.firing("NightfoldDayLate")
        assert (late["nightfold_job"], late["day"], late["severity"]) == (JOB, DAY, "critical")
        # And every alert expression evaluates, and every rule is healthy
        for rule in promql.alert_rules():
            prom.query(rule["expr"])
        assert all(r["health"] == "ok" for r in prom.rules()), prom.rules()
        # And the dashboard's chunk panels count each chunk once (scrape + push: not twice)
        prom.wait("a push after planning", 'nightfold_run_chunks{job="nightfold_master"} > 0')
        counts = chunk_counts(db)
        panels = {q.where.split(":")[1]: q.expr for q in promql.dashboard_queries(DASHBOARD)}

        def dashboard_counts() -> tuple[dict[str, int], list[float]]:
            shown = prom.query(fill(panels["Chunk progress by stage"], "1m"))
            by_state = {
                s["metric"]["state"]: int(float(s["value"][1]))
                for s in shown
                if s["metric"]["stage"] == "map" and float(s["value"][1])
            }
            return by_state, prom.values(fill(panels["Chunks in flight"], "1m"))

        truth = (counts, [float(counts.get("queued", 0) + counts.get("claimed", 0))])
        try:  # the scrape may lag the push by an interval: wait until both caught up
            wait_for(lambda: dashboard_counts() == truth, 30, "the dashboard's chunk counts")
        except TimeoutError:
            assert dashboard_counts() == truth  # shows the difference

        # When two workers (serving their metrics) run the night to the end
        for port in wports:
            cluster.worker("--metrics-port", str(port))
        assert master.wait(timeout=300) == 0, cluster.log_tail()
        # Then Prometheus sees the day succeeded, and the late alert resolves
        prom.wait("the final push", f'nightfold_day_succeeded{{day="{DAY}"}} == 1')
        prom.wait("worker scrapes", 'count(up{job="nightfold-worker"} == 1) == 2')
        wait_for(lambda: not prom.firing("NightfoldDayLate"), 60, "the late alert to resolve")
        assert all(r["health"] == "ok" for r in prom.rules()), prom.rules()
        # And every dashboard query returns data, its variables filled in
        window = f"{int(time.time() - started) + 60}s"  # the whole run
        empty = []
        for q in promql.dashboard_queries(DASHBOARD):
            if q.label is not None:  # a variable: label_values(selector, label)
                wanted = {"nightfold_job": JOB, "day": DAY}[q.label]
                if wanted not in prom.label_values(q.label, q.expr):
                    empty.append(q.where)
            elif not prom.has_data(fill(q.expr, window)):
                empty.append(f"{q.where}: {fill(q.expr, window)}")
        assert empty == []
        # And no alert expression fails to evaluate after the run either
        for rule in promql.alert_rules():
            prom.query(rule["expr"])
