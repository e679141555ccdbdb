"""deploy/prometheus with Prometheus' own tool: ``promtool check`` reads the rules and
the config as Prometheus does, and ``promtool test rules`` runs the rule tests of
tests/deploy/rules/alerts_test.yml, which cover every alert, firing (with the labels
its annotations use, and the annotations as rendered) and not firing.

promtool comes from Debian's ``prometheus`` package (``make tools``); without it these
tests are skipped, and fail under CI=true."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.deployfiles import DEPLOY, REPO
from tests.support import promql
from tests.support.services import in_ci

RULE_TESTS = REPO / "tests" / "deploy" / "rules" / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        why = "no promtool (make tools installs Debian's prometheus)"
        if in_ci():
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    return path


def run(promtool: str, *args: str) -> str:
    res = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def test_promtool_checks_the_rules(promtool: str) -> None:
    out = run(promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert f"SUCCESS: {len(promql.alert_rules())} rules found" in out


def test_promtool_checks_the_config(promtool: str) -> None:
    out = run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "SUCCESS" in out


def test_rule_tests_pass(promtool: str) -> None:
    out = run(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in out


def _cases() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    return [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]


@pytest.mark.parametrize("rule", promql.alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_is_tested_firing_and_not_firing(rule: dict[str, Any]) -> None:
    cases = [c for c in _cases() if c["alertname"] == rule["alert"]]
    firing = [a for c in cases for a in c.get("exp_alerts") or []]
    assert firing, f"{rule['alert']}: no test where it fires"
    assert any(not c.get("exp_alerts") for c in cases), f"{rule['alert']}: none where it does not"
    used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
    for alert in firing:
        labels = alert["exp_labels"]
        assert used <= set(labels), f"{rule['alert']}: annotations use {used - set(labels)}"
        assert labels["severity"] == rule["labels"]["severity"]
        assert set(alert["exp_annotations"]) == set(rule["annotations"]), "rendered, all of them"
        assert "{{" not in " ".join(alert["exp_annotations"].values())


def test_every_alert_carries_the_nightfold_job_label_where_it_can() -> None:
    """Issue 19: routing by job needs `nightfold_job` on every per-job alert; only the
    nightly deadline rule (one for all jobs) aggregates it away."""
    for case in _cases():
        for alert in case.get("exp_alerts") or []:
            if case["alertname"] != "NightfoldRunNotFinished":
                assert "nightfold_job" in alert["exp_labels"], case["alertname"]
