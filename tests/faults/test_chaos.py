"""The short version of the fault-injection harness (``tests.support.chaos``):
at least 20 randomized trials of the real pipeline on the real services, together
injecting every fault kind, each trial ending as expected with ``verify`` passing
for every run that succeeded, no row lost or counted twice, no chunk done twice and
no stale summary cell after a rerun.

``NIGHTFOLD_CHAOS_SEED`` replays a session; the report goes to
``.nightfold/chaos-short.json`` (``make chaos`` runs the long version).
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import probe_hbase, probe_rabbitmq
from tests.support.chaos import KINDS, SessionConfig, run_session
from tests.support.databases import _probe_mysql
from tests.support.services import REPO, require_service

pytestmark = [pytest.mark.faults, pytest.mark.slow]

MIN_TRIALS = max(20, len(KINDS))
"""One round of the lead deck: every kind leads once without make-up trials."""
REPORT = REPO / ".nightfold" / "chaos-short.json"


@pytest.fixture(scope="module")
def services() -> None:
    require_service("MariaDB", "NIGHTFOLD_DATABASE_URL", _probe_mysql)
    require_service("RabbitMQ", "NIGHTFOLD_BROKER_URL", probe_rabbitmq)
    require_service("HBase", "NIGHTFOLD_STORE_URL", probe_hbase)


@pytest.mark.timeout(1500)
def test_randomized_fault_trials(services: None, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        with capsys.disabled():
            print(line, flush=True)

    # Given a session of randomized trials that, between them, inject every fault kind
    cfg = SessionConfig(
        trials=MIN_TRIALS, max_trials=MIN_TRIALS + 12, report=REPORT, time_budget=420
    )
    report = run_session(cfg, say)
    data = report.data
    failures = "\n".join(json.dumps(u, sort_keys=True) for u in data["unexpected"]) or "(none)"
    # Then every trial ended as expected
    assert report.ok, f"seed {data['seed']}: unexpected trials:\n{failures}"
    assert data["trials"] >= MIN_TRIALS
    assert data["runs_as_expected"] == data["runs_total"]
    # And no row was lost or counted twice, no chunk completed twice
    assert data["rows_lost"] == 0 and data["rows_double_counted"] == 0, failures
    assert data["chunks_done_twice"] == 0, failures
    # And no rerun left a stale summary row or cell
    assert data["stale_cells"] == 0 and data["stale_rows"] == 0, failures
    # And every fault kind was injected at least once
    missing = [k for k in KINDS if data["faults_by_kind"].get(k, 0) == 0]
    assert not missing, f"seed {data['seed']}: fault kinds never injected: {missing}"
    assert data["recovery_samples"] > 0 and data["recovery_s_max"] is not None
