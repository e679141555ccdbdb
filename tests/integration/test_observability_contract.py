"""The observability contract against live processes: every metric (and label) the alert
rules and the Grafana dashboard use is exposed by a running master and worker, or pushed
by the master to its Pushgateway; and no log line of theirs carries a URL's password."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.support import promql
from tests.support.pipeline import PIPELINE_DAY as DAY
from tests.support.pipeline import Cluster, run_state, wait_for
from tests.support.scrape import fake_pushgateway, free_port, metrics_text, serving

_USERINFO = re.compile(r"://[^/:@\s]*:([^@/\s]+)@")


def passwords(env: dict[str, str]) -> set[str]:
    """The passwords inside the URLs a process is configured with."""
    return {m for k, v in env.items() if k.endswith("_URL") for m in _USERINFO.findall(v)}


@pytest.mark.parametrize("rows", [20_000])
def test_rules_and_dashboard_use_only_live_metrics(cluster: Cluster, db: Engine) -> None:
    # Given a master and a worker at DEBUG with metrics ports, the master pushing
    # to a (stand-in) Pushgateway
    cluster.env["NIGHTFOLD_LOG_LEVEL"] = "DEBUG"
    mport, wport = free_port(), free_port()
    with fake_pushgateway() as gateway:
        master = cluster.master(DAY, "--metrics-port", str(mport), "--pushgateway-url", gateway.url)
        wait_for(lambda: run_state(db) == "mapping" and serving(mport), 60, "master metrics")
        wait_for(lambda: "nightfold_hints_published_total{" in metrics_text(mport), 30, "hints")
        from_master = metrics_text(mport)
        cluster.worker("--metrics-port", str(wport), "--log-format", "json")
        # When the run completes
        assert master.wait(timeout=180) == 0, cluster.log_tail()
        from_worker = metrics_text(wport)
        # pushadd (POST): replaces only the metrics sent, keeping an earlier last success
        pushed = [p for p in gateway.pushes if p.method == "POST"]
    # Then every name the rules and the dashboard use is a family a live process exposes
    families = [
        *promql.scraped_families(from_master),
        *promql.scraped_families(from_worker),
        *promql.scraped_families(pushed[-1].body if pushed else ""),
    ]
    queries = promql.all_queries()
    exposed = promql.exposed_names(families)
    used = promql.used_metric_names(queries) - promql.PROMETHEUS_OWN
    assert used, "the rules and the dashboard use nightfold metrics"
    assert sorted(used - set(exposed)) == []
    # and the labels they filter and group by are on the series (where there are any)
    assert promql.problems(queries, families) == []
    # And the deadline rule's input reaches the Pushgateway with a value when a run succeeds
    # (the last push is the one at exit; a slow run also pushes every push_interval_seconds)
    assert pushed, [p.path for p in gateway.pushes]
    samples = {
        s.name: s
        for fam in text_string_to_metric_families(pushed[-1].body)
        for s in fam.samples
        if fam.name in ("nightfold_last_success_timestamp_seconds", "nightfold_run_state")
        and s.labels.get("state", "succeeded") == "succeeded"
    }
    assert samples["nightfold_last_success_timestamp_seconds"].value > 1.7e9
    assert samples["nightfold_run_state"].value == 1
    # And the worker's JSON log lines carry the event ids as keys
    worker_log = "\n".join(p.read_text() for p in cluster.logs.glob("worker-*.log"))
    assert re.search(r'"chunk": \d+, .*"stage": "map", .*"worker": "', worker_log)
    # And no log line carries a URL's password (real backends: the services' own)
    logs = "\n".join(p.read_text(errors="replace") for p in cluster.logs.glob("*.log"))
    for secret in passwords(cluster.env):
        assert f":{secret}@" not in logs
        if len(secret) >= 12:  # a random one (the local services' may be a plain word)
            assert secret not in logs


SECRET = "Pa55w0rd-nightfold-test"


@pytest.mark.parametrize("log_format", ["human", "json"])
def test_no_password_in_logs_when_services_are_unreachable(tmp_path: Path, log_format: str) -> None:
    """The error paths are where a URL ends up in a message: a worker at DEBUG whose
    broker (then database) cannot be reached never prints the password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    env.update(
        NIGHTFOLD_LOG_LEVEL="DEBUG",
        NIGHTFOLD_LOG_FORMAT=log_format,
        NIGHTFOLD_DATABASE_URL=f"sqlite:///{tmp_path / 'nightfold.db'}",
        NIGHTFOLD_BROKER_URL=f"amqp://nightfold:{SECRET}@127.0.0.1:{free_port()}/nightfold",
        NIGHTFOLD_STORE_URL=f"local://{tmp_path / 'store.sqlite'}",
    )
    nightfold = [sys.executable, "-m", "nightfold"]
    subprocess.run([*nightfold, "db", "upgrade"], env=env, check=True, capture_output=True)
    # Given a worker whose broker refuses connections
    worker = subprocess.Popen(
        [*nightfold, "worker", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:  # When it has retried for a few seconds and is stopped
        out, _ = worker.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    broker_log = out.decode(errors="replace")
    # And a worker whose database refuses connections
    env["NIGHTFOLD_DATABASE_URL"] = (
        f"mysql+pymysql://nightfold:{SECRET}@127.0.0.1:{free_port()}/nightfold"
    )
    db_res = subprocess.run(
        [*nightfold, "worker", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    # Then both said what was wrong, with the URL masked, and never the password
    assert "rabbitmq unavailable" in broker_log and "nightfold:***@127.0.0.1" in broker_log
    assert db_res.returncode == 3
    assert "nightfold:***@127.0.0.1" in db_res.stderr
    for text in (broker_log, db_res.stdout, db_res.stderr):
        assert SECRET not in text
