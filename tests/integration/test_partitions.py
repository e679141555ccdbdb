"""Partition controls of ``nightfold master run --from/--to`` and the days grid, as
processes on both backends: a dry run changes nothing, ``--select failed`` runs only
missing days and reruns the cancelled one, newest first, at most ``--max-active``
days at once; the master exports each day's deadline and success; ``status --days``
shows the days."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select

from nightfold.common.db.clock import seconds_between
from nightfold.common.db.models import Run
from nightfold.common.deadline import due_at, parse_deadline
from tests.support.pipeline import PIPELINE_DAY, Cluster, assert_verifies, run_state, wait_for
from tests.support.scrape import fake_pushgateway

D19, D20, D21, D22 = "2026-11-19", "2026-11-20", "2026-11-21", PIPELINE_DAY


def runs(db: Engine) -> list[tuple[int, str, int, str, object, object]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(Run.id, Run.day, Run.generation, Run.state, Run.started_at, Run.finished_at)
        )
        return [(int(i), str(d), int(g), str(s), a, b) for i, d, g, s, a, b in rows]


@pytest.mark.parametrize("rows", [3_000])
def test_backfill_selects_orders_caps_and_dry_runs(cluster: Cluster, db: Engine) -> None:
    for n, d in enumerate((D19, D20, D21)):
        seeded = cluster.cli("seed", "--day", d, "--rows", "3000", "--seed", str(n + 2))
        assert seeded.returncode == 0, seeded.stderr
    # Given day 20 cancelled (its master had no worker), then workers, and day 19 run
    first = cluster.master(D20)
    wait_for(lambda: run_state(db) == "mapping", 120, "day 20 planned")
    assert cluster.cli("cancel", "--day", D20).returncode == 0
    assert first.wait(timeout=60) != 0
    cluster.worker()
    cluster.worker()
    ran = cluster.cli("master", "run", "--day", D19, "--no-resume-earlier")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    span = ("master", "run", "--from", D19, "--to", D22)
    before = runs(db)

    # When the backfill is dry-run, only missing days
    dry = cluster.cli(*span, "--select", "missing", "--dry-run")
    # Then it says what would run and runs nothing
    assert dry.returncode == 0, dry.stderr
    lines = {line.split()[0]: line for line in dry.stdout.splitlines() if line[:4] == "2026"}
    assert lines[D19].endswith("succeeded (generation 1)   -> skip")
    assert lines[D20].endswith("cancelled (generation 1)   -> skip")
    assert lines[D21].endswith("no run                     -> run generation 1")
    assert lines[D22].endswith("-> run generation 1")
    assert "2 day(s) would run, at most 1 at once" in dry.stdout
    dry = cluster.cli(*span, "--select", "failed", "--newest-first", "--dry-run")
    assert [line.split()[0] for line in dry.stdout.splitlines() if line[:4] == "2026"] == [
        D22, D21, D20, D19
    ]  # fmt: skip
    assert "cancelled (generation 1)   -> rerun as generation 2" in dry.stdout
    assert runs(db) == before

    # When it runs missing and failed days, newest first, two at once, with a deadline
    with fake_pushgateway() as gateway:
        res = cluster.cli(*span, "--select", "failed", "--newest-first", "--max-active", "2",
                          "--deadline", "07:00", "--pushgateway-url", gateway.url)  # fmt: skip
        pushed = gateway.pushes[-1].body if gateway.pushes else ""
    assert res.returncode == 0, res.stdout + res.stderr + cluster.log_tail()
    # Then day 19 was left alone, day 20 got a second generation, 21 and 22 their first
    after = runs(db)
    latest = {d: (g, s) for _, d, g, s, _, _ in sorted(after, key=lambda r: r[2])}
    assert latest == {D19: (1, "succeeded"), D20: (2, "succeeded"),
                      D21: (1, "succeeded"), D22: (1, "succeeded")}  # fmt: skip
    assert len(after) == len(before) + 3
    new = {(d, g): r for r in after if r not in before for _, d, g, *_ in [r]}
    # newest first: 22 and 21 were created before 20 (which waited for a free slot)
    assert max(new[(D22, 1)][0], new[(D21, 1)][0]) < new[(D20, 2)][0]
    # never more than two days live at once
    spans = [(r[4], r[5]) for r in new.values()]
    for start, _ in spans:
        live = [s for s, e in spans if seconds_between(s, start) >= 0 > seconds_between(e, start)]
        assert len(live) <= 2
    for d in (D20, D21, D22):
        assert_verifies(cluster, d)
    # And the master exported each day's deadline and success for the alert
    samples = {
        (s.name, s.labels["day"]): s.value
        for fam in text_string_to_metric_families(pushed)
        for s in fam.samples
        if fam.name in ("nightfold_day_deadline_timestamp_seconds", "nightfold_day_succeeded")
    }
    seven = parse_deadline("07:00")
    assert seven is not None
    for d in (D19, D20, D21, D22):
        due = due_at(dt.date.fromisoformat(d), seven).timestamp()
        assert samples[("nightfold_day_deadline_timestamp_seconds", d)] == due
        assert samples[("nightfold_day_succeeded", d)] == 1

    # And status --days shows the days, the missing one and the late ones
    out = cluster.cli("status", "--days", "5", "--day", D22, "--deadline", "07:00", "--json")
    assert out.returncode == 0, out.stderr
    grid = json.loads(out.stdout)
    assert [(r["day"], r["state"], r["generation"]) for r in grid["days"]] == [
        (D22, "succeeded", 1), (D21, "succeeded", 1), (D20, "succeeded", 2),
        (D19, "succeeded", 1), ("2026-11-18", "missing", 0),
    ]  # fmt: skip
    assert all(r["late"] for r in grid["days"]), "all finished (or missing) long after 07:00"
    assert grid["days"][0]["chunks"]["map"]["done"] == grid["days"][0]["chunks"]["map"]["total"]
    assert grid["days"][0]["rows_read"] == 3000
    shown = cluster.cli("status", "--days", "5", "--day", D22)
    assert shown.returncode == 0, shown.stderr
    assert "(no deadline set)" in shown.stdout and "missing" in shown.stdout

    # And --select all reruns every finished day (dry run)
    dry = cluster.cli(*span, "--select", "all", "--dry-run", "--max-active", "3")
    assert dry.stdout.count("-> rerun as generation") == 4
    assert "4 day(s) would run, at most 3 at once" in dry.stdout
