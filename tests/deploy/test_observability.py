"""deploy/prometheus and deploy/grafana, offline: the scrape config, the alert rules
and the dashboard are well-formed, and every metric, label and label value they use
is one that common/metrics.py defines (tests/integration/test_observability_contract.py
then checks the same names against live processes)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from nightfold.common.config import Settings
from nightfold.common.states import TERMINAL_RUN_STATES, ChunkState, RunState, Stage
from tests.deploy.deployfiles import DEPLOY, REPO, find_k8s, load_compose, load_yaml_documents
from tests.support import promql

PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
OPERATOR_GUIDE = REPO / "docs" / "operator.md"
DASHBOARD = GRAFANA / "dashboards" / "nightfold.json"
ALERTS = ("NightfoldRunNotFinished", "NightfoldDeadChunks", "NightfoldNoLiveWorkers",
          "NightfoldLeaseExpiryStorm", "NightfoldRunWithoutMaster", "NightfoldDayLate")  # fmt: skip
VALUES = {
    "state": {s.value for s in RunState} | {s.value for s in ChunkState},
    "stage": {s.value for s in Stage},
}
"""Label values the code can produce, for the labels whose values are an enum."""
_DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")


def prometheus_config() -> dict[str, Any]:
    (doc,) = load_yaml_documents(PROMETHEUS / "prometheus.yml")
    result: dict[str, Any] = doc
    return result


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


# -- the PromQL reader itself ------------------------------------------------------------


def test_reader_finds_metrics_labels_and_grouping() -> None:
    usage = promql.read(
        "sum by (a) (rate(x_total{b=~\"c|d\", e='f'}[5m])) / on (g) group_left (h) "
        "y offset 1h30m and topk(3, z[1h:5m]) or vector(0) > bool 2"
    )
    assert usage.metrics == {"x_total", "y", "z"}
    assert usage.selectors[0].matchers == (("b", "=~", "c|d"), ("e", "=", "f"))
    assert usage.grouping == {"a", "g", "h"}


def test_reader_takes_grafana_variables_and_name_matchers() -> None:
    usage = promql.read(
        'increase({__name__="x_total", job=~"$nightfold_job"}[$__rate_interval]) + sum(y) by (z)'
    )
    assert usage.metrics == {"x_total", "y"}
    assert usage.grouping == {"z"}


@pytest.mark.parametrize(
    "bad", ["sum(x", "x)", "x{a=}", "x{a=b}", "rate(x[5 m])", "x ; y", "x[5m"], ids=repr
)
def test_reader_rejects_malformed_expressions(bad: str) -> None:
    with pytest.raises(promql.PromQLError):
        promql.read(bad)


def test_problems_finds_wrong_names_labels_and_suffixes() -> None:
    fams = [
        promql.Family("c", "counter", frozenset({"nightfold_job", "stage"})),
        promql.Family("h", "histogram", frozenset({"stage"})),
    ]
    queries = [
        promql.Query("ok", 'sum by (stage, le) (rate(h_bucket{stage="map"}[5m]))'),
        promql.Query("ok2", 'c_total{nightfold_job="x"} and on (instance) up'),
        promql.Query("counter without _total", "c"),
        promql.Query("typo", "c_totl"),
        promql.Query("no label", 'c_total{state="done"}'),
        promql.Query("no grouping label", "sum by (day) (c_total)"),
    ]
    found = promql.problems(queries, fams)
    assert [p.split(":")[0] for p in found] == [
        "counter without _total",
        "typo",
        "no label",
        "no grouping label",
    ]


# -- prometheus.yml --------------------------------------------------------------------------


def test_prometheus_loads_the_alert_rules() -> None:
    config = prometheus_config()
    assert config["rule_files"] == ["alerts.yml"]
    assert (PROMETHEUS / "alerts.yml").is_file()


def test_nightfold_metrics_never_use_the_job_label() -> None:
    # `job` is Prometheus' (the scrape job) and the Pushgateway's grouping label
    for family in promql.code_families():
        assert "job" not in family.labels, family.name
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    for name in ("nightfold-worker", "nightfold-master"):
        assert not jobs[name].get("honor_labels", False), "the target's job label must win"


def test_pushgateway_is_scraped_with_honor_labels_and_wired_to_the_master() -> None:
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    push = jobs["pushgateway"]
    assert push["honor_labels"] is True
    (static,) = push["static_configs"]
    (target,) = static["targets"]
    host, port = target.split(":")
    compose = load_compose()
    assert host in compose["services"]
    assert compose["services"][host]["image"].startswith("prom/pushgateway:")
    master = compose["services"]["master"]
    assert master["environment"]["NIGHTFOLD_PUSHGATEWAY_URL"] == f"http://{host}:{port}"
    assert host in master["depends_on"]


def test_metrics_port_is_the_scraped_port_everywhere() -> None:
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    port = jobs["nightfold-worker"]["dns_sd_configs"][0]["port"]
    services = load_compose()["services"]
    for name in ("worker", "master"):
        assert services[name]["environment"]["NIGHTFOLD_METRICS_PORT"] == str(port), name
    assert str(port) in services["worker"]["expose"]
    config = find_k8s("ConfigMap", "nightfold-config")["data"]
    assert config["NIGHTFOLD_METRICS_PORT"] == str(port)
    worker = find_k8s("Deployment", "nightfold-worker")["spec"]["template"]
    (container,) = worker["spec"]["containers"]
    (metrics_port,) = [p for p in container["ports"] if p["name"] == "metrics"]
    assert metrics_port["containerPort"] == port
    annotations = worker["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


# -- alerts.yml ------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def test_alert_rules_are_well_formed() -> None:
    (doc,) = load_yaml_documents(PROMETHEUS / "alerts.yml")
    assert set(doc) == {"groups"}
    anchors = {
        _slug(m) for m in re.findall(r"^#+\s+(.*)$", OPERATOR_GUIDE.read_text(), re.MULTILINE)
    }
    names = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            names.append(rule["alert"])
            assert re.fullmatch(r"Nightfold[A-Z][A-Za-z]+", rule["alert"])
            assert _DURATION.match(rule.get("for", "0s")), rule["for"]
            assert rule["labels"]["severity"] in ("critical", "warning")
            notes = rule["annotations"]
            assert notes["summary"] and notes["description"]
            doc_path, _, anchor = notes["runbook"].partition("#")
            assert doc_path == "docs/operator.md" and anchor in anchors, notes["runbook"]
    assert sorted(names) == sorted(ALERTS)


@pytest.mark.parametrize("rule", promql.alert_rules(), ids=lambda r: r["alert"])
def test_alert_annotations_use_only_labels_the_expression_keeps(rule: dict[str, Any]) -> None:
    usage = promql.read(rule["expr"])
    text = " ".join(rule["annotations"].values())
    for label in re.findall(r"\$labels\.(\w+)", text):
        assert label in usage.grouping, f"{rule['alert']}: $labels.{label} is aggregated away"
    for template in re.findall(r"\{\{(.*?)\}\}", text):
        assert re.fullmatch(r"\s*\$(labels\.\w+|value)(\s*\|\s*\w+)?\s*", template), template


# -- the dashboard ---------------------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    doc = dashboard()
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 36
    panels = list(promql.walk_panels(doc["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip()


def test_dashboard_variables_exist_and_default_to_the_provisioned_source() -> None:
    doc = dashboard()
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    text = DASHBOARD.read_text()
    used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", text)) - {
        "__rate_interval", "__range", "__interval", "__all",
    }  # fmt: skip
    assert used <= set(variables), used - set(variables)
    (sources,) = load_yaml_documents(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = sources["datasources"]
    assert variables["datasource"]["current"]["value"] == source["uid"]
    assert variables["datasource"]["query"] == source["type"]


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = " | ".join(p["title"].lower() for p in promql.walk_panels(dashboard()["panels"]))
    for wanted in ("throughput", "progress by stage", "stage timeline", "percentiles",
                   "slowest", "in flight", "retries", "dead", "lease", "workers up"):  # fmt: skip
        assert wanted in titles, wanted


def test_dashboard_is_provisioned_from_the_mounted_folder() -> None:
    (providers,) = load_yaml_documents(GRAFANA / "provisioning" / "dashboards" / "nightfold.yml")
    (provider,) = providers["providers"]
    mounts = load_compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert DASHBOARD.parent == REPO / "deploy" / "grafana" / "dashboards"


# -- the contract with common/metrics.py -------------------------------------------------------


@pytest.mark.parametrize("query", promql.all_queries(), ids=lambda q: q.where)
def test_every_query_uses_defined_metrics_and_labels(query: promql.Query) -> None:
    assert promql.problems([query], promql.code_families()) == []


@pytest.mark.parametrize("query", promql.all_queries(), ids=lambda q: q.where)
def test_label_values_are_ones_the_code_produces(query: promql.Query) -> None:
    if not query.expr:
        return
    for selector in promql.read(query.expr).selectors:
        for label, op, value in selector.matchers:
            if label not in VALUES or "$" in value:
                continue
            wanted = value.split("|") if op.endswith("~") else [value]
            assert set(wanted) <= VALUES[label], f"{selector.metric}{{{label}{op}{value!r}}}"


def test_every_metric_is_on_the_dashboard_or_in_a_rule() -> None:
    """A metric nobody looks at is a metric nobody maintains: a new family in
    common/metrics.py needs a panel (or a rule)."""
    used = promql.used_metric_names(promql.all_queries())
    exposed = promql.exposed_names(promql.code_families())
    shown = {exposed[name].name for name in used if name in exposed}
    assert {f.name for f in promql.code_families()} <= shown


def test_dashboard_json_is_stable_formatting() -> None:
    """Two-space JSON with a final newline, so diffs of the provisioned file stay readable."""
    text = DASHBOARD.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"


def test_no_host_path_or_secret_in_the_dashboard() -> None:
    text = DASHBOARD.read_text()
    assert "@" not in text and "password" not in text.lower()
    assert not re.search(r"\b(localhost|127\.0\.0\.1)\b", text)


def test_folders_hold_what_they_say() -> None:
    assert sorted(p.name for p in PROMETHEUS.iterdir()) == ["alerts.yml", "prometheus.yml"]
    assert sorted(p.name for p in (GRAFANA / "dashboards").iterdir()) == [
        "README.md",
        "nightfold.json",
    ]


def test_a_run_without_a_live_master_alerts_within_minutes() -> None:
    """Issue 13 item 3: the alert on a dead master fires within minutes (not at the
    morning deadline), per run, from the heartbeat the master pushes periodically."""
    (rule,) = [r for r in promql.alert_rules() if r["alert"] == "NightfoldRunWithoutMaster"]
    usage = promql.read(rule["expr"])
    assert usage.metrics == {
        "nightfold_master_heartbeat_timestamp_seconds",
        "nightfold_run_state",
    }
    assert {"nightfold_job", "day"} <= usage.grouping
    (threshold,) = [int(n) for n in re.findall(r">\s*(\d+)", rule["expr"]) if int(n) > 1]
    seconds = {"s": 1, "m": 60, "h": 3600}
    wait = int(rule["for"][:-1]) * seconds[rule["for"][-1]]
    assert threshold + wait <= 600, "fires within 10 minutes of the master's death"
    assert threshold > 3 * Settings().push_interval_seconds, "a few missed pushes never fire it"
    states = {s for sel in usage.selectors for m in sel.matchers if m[0] == "state"
              for s in m[2].split("|")}  # fmt: skip
    assert states == {s.value for s in RunState} - {s.value for s in TERMINAL_RUN_STATES}
