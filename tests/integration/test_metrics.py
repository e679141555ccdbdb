"""Scrape real /metrics from a running master and worker: the metric families
the alert rules and dashboard rely on exist, and the counters move."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from nightfold.common import metrics
from tests.support.pipeline import PIPELINE_DAY as DAY
from tests.support.pipeline import Cluster, run_state, wait_for

MASTER_ONLY = {
    "nightfold_hints_published",
    "nightfold_lease_expiries",
    "nightfold_worker_dead_takeovers",
    "nightfold_run_chunks",
    "nightfold_run_chunks_in_flight",
    "nightfold_run_state",
    "nightfold_run_rows_read",
    "nightfold_last_success_timestamp_seconds",
    "nightfold_run_duration_seconds",
    "nightfold_master_heartbeat_timestamp_seconds",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Metric families by name, as (sample name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        fam.name: [(s.name, s.labels, s.value) for s in fam.samples]
        for fam in text_string_to_metric_families(text)
    }


def scrapeable(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("rows", [20_000])
def test_master_and_worker_expose_every_metric(cluster: Cluster, db: Engine) -> None:
    # Given a master with no worker yet (it waits in mapping, serving metrics)
    mport, wport = free_port(), free_port()
    master = cluster.master(DAY, "--metrics-port", str(mport))
    wait_for(lambda: run_state(db) == "mapping" and scrapeable(mport), 60, "master metrics")
    wait_for(lambda: bool(scrape(mport).get("nightfold_hints_published")), 30, "a publish")
    from_master = scrape(mport)
    # When a worker with metrics joins and the run completes
    cluster.worker("--metrics-port", str(wport))
    assert master.wait(timeout=180) == 0, cluster.log_tail()
    from_worker = scrape(wport)
    # Then every metric family exists where it belongs
    for name in metrics.ALL_NAMES:
        where = from_master if name in MASTER_ONLY else from_worker
        assert name in where, f"{name} missing"
    # And the counters tell the story of the run
    state = {labels["state"]: v for _, labels, v in from_master["nightfold_run_state"]}
    assert state["mapping"] == 1
    completed = sum(
        v
        for name, labels, v in from_worker["nightfold_chunks_completed"]
        if labels.get("stage") == "map" and name.endswith("_total")
    )
    scanned = sum(
        v for name, _, v in from_worker["nightfold_rows_scanned"] if name.endswith("_total")
    )
    assert completed >= 1
    assert scanned == 20_000
