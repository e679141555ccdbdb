"""A run whose master died and was not restarted (issue 13, items 3 and 4), as
processes on the embedded backends and on the real MariaDB + RabbitMQ + HBase:
``status`` says it is stalled and names the master, the master's periodic push
carries its heartbeat (so an alert sees it age), and the next night's plain
``master run --day yesterday`` resumes a stranded earlier day."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select, update

from nightfold.common.db import runs as run_repo
from nightfold.common.db.clock import db_now_plus
from nightfold.common.db.models import Chunk, Run
from nightfold.common.db.runs import RunParams
from tests.support.pipeline import PIPELINE_DAY as DAY
from tests.support.pipeline import (
    Cluster,
    chunk_counts,
    done_events_per_chunk,
    kill,
    run_state,
    wait_for,
)
from tests.support.scrape import Push, fake_pushgateway

pytestmark = pytest.mark.slow


def status(cluster: Cluster, *args: str) -> dict[str, Any]:
    res = cluster.cli("status", "--json", *args)
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def dispatched_all_done(counts: dict[str, int]) -> bool:
    """The workers finished every chunk a master handed out (only a master hands out more)."""
    return counts.get("done", 0) > 0 and not counts.get("queued") and not counts.get("claimed")


def heartbeats(pushes: list[Push]) -> list[float]:
    """The master heartbeat gauge of each push, for DAY."""
    out = []
    for push in pushes:
        for fam in text_string_to_metric_families(push.body):
            for s in fam.samples:
                if s.name == "nightfold_master_heartbeat_timestamp_seconds" and (
                    s.labels.get("day") == DAY and s.labels.get("nightfold_job")
                ):
                    out.append(s.value)
    return out


@pytest.mark.parametrize("rows", [30_000])
def test_a_killed_master_shows_as_stalled_and_its_pushed_heartbeat_ages(
    cluster: Cluster, db: Engine
) -> None:
    cluster.env["NIGHTFOLD_PUSH_INTERVAL_SECONDS"] = "0.5"
    with fake_pushgateway() as gateway:
        # Given a master driving the run (no workers yet), pushing to a Pushgateway
        master = cluster.master(DAY, "--pushgateway-url", gateway.url)
        wait_for(lambda: run_state(db) == "mapping", 120, "the run to be planned")
        # Then it pushes while it runs, each push with a fresher heartbeat timestamp
        wait_for(
            lambda: len(set(heartbeats(gateway.pushes))) >= 2,
            30,
            "two periodic pushes with different heartbeats",
        )
        beats = heartbeats(gateway.pushes)
        assert beats[-1] > beats[0] > time.time() - 120
        assert "nightfold_run_state" in gateway.pushes[-1].body
        # And status names the live master, not stalled
        live = status(cluster)["runs"][0]
        assert live["stalled"] is False and f":{master.pid}:" in live["master"]["owner"]
        assert live["master"]["heartbeat_age_s"] < 10
        # When the master is SIGKILLed and nothing restarts it
        kill(master)
        pushes_at_death = len(gateway.pushes)
        cluster.worker()  # the workers finish the chunks handed out; the run stays mapping
        wait_for(lambda: dispatched_all_done(chunk_counts(db)), 120, "the queued chunks done")
    # Then nothing pushes any more: the last pushed heartbeat ages (what the alert sees)
    assert len(gateway.pushes) == pushes_at_death
    assert run_state(db) == "mapping"
    # And status (within master_stale_seconds = 10 s) says the run is stalled
    wait_for(lambda: status(cluster)["runs"][0]["stalled"], 60, "status to say stalled")
    run = status(cluster, "--day", DAY)["runs"][0]
    assert run["state"] == "mapping"
    assert f":{master.pid}:" in run["master"]["last_owner"]
    assert run["master"]["heartbeat_age_s"] > 10
    text = cluster.cli("status", "--day", DAY)
    assert text.returncode == 0, text.stderr
    flat = " ".join(text.stdout.split())
    assert "STALLED: no live master for" in flat, text.stdout
    assert f":{master.pid}:" in flat
    assert f"nightfold master run --job merchant_daily --day {DAY}" in flat
    assert "…" not in text.stdout  # piped: nothing cut
    # And a master started again resumes it: status no longer says stalled
    assert cluster.master(DAY).wait(timeout=180) == 0, cluster.log_tail()
    done = status(cluster, "--day", DAY)["runs"][0]
    assert done["state"] == "succeeded" and done["stalled"] is False


def map_chunks_done(db: Engine, day: dt.date) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(Chunk)
                .join(Run, Run.id == Chunk.run_id)
                .where(Run.day == day, Chunk.stage == "map", Chunk.state == "done")
            ).scalar_one()
        )


def day_state(db: Engine, day: dt.date) -> str | None:
    with db.connect() as conn:
        return conn.execute(
            select(Run.state).where(Run.day == day).order_by(Run.generation.desc()).limit(1)
        ).scalar()


@pytest.mark.parametrize("rows", [1_000])
def test_the_next_nightly_run_resumes_a_stranded_earlier_day(cluster: Cluster, db: Engine) -> None:
    today = dt.date.today()
    stranded, old, yesterday = (today - dt.timedelta(days=n) for n in (3, 10, 1))
    for day, rows, seed in ((stranded, 30_000, 3), (old, 2_000, 10), (yesterday, 5_000, 1)):
        res = cluster.cli("seed", "--day", str(day), "--rows", str(rows), "--seed", str(seed))
        assert res.returncode == 0, res.stderr
    # Given a run outside the look-back (10 days ago) left planned by a killed master
    m_old = cluster.master(old.isoformat())
    wait_for(lambda: day_state(db, old) == "mapping", 120, "the old day planned")
    kill(m_old)
    # And a run 3 days ago whose master was SIGKILLed mid-map with no wrapper to retry it
    cluster.worker()
    m_stranded = cluster.master(stranded.isoformat())
    wait_for(lambda: day_state(db, stranded) == "mapping", 120, "the stranded day planned")
    wait_for(lambda: map_chunks_done(db, stranded) >= 1, 120, "a map chunk of the day done")
    kill(m_stranded)
    assert day_state(db, stranded) == "mapping", "killed too late to strand the day"
    # When the next night's plain command runs (workers running)
    cluster.worker()
    res = cluster.cli("master", "run", "--day", "yesterday", timeout=300)
    # Then it resumed the stranded day to success first, then ran yesterday
    assert res.returncode == 0, res.stdout + res.stderr + cluster.log_tail()
    assert f"resuming merchant_daily/{stranded}" in res.stdout
    lines = res.stdout.splitlines()
    order = [i for i, line in enumerate(lines) if ": succeeded" in line]
    assert len(order) == 2 and f"/{stranded}#1" in lines[order[0]], res.stdout
    assert f"/{yesterday}#1" in lines[order[1]], res.stdout
    for day in (stranded, yesterday):
        assert day_state(db, day) == "succeeded"
        out = cluster.cli("verify", "--day", day.isoformat())
        assert out.returncode == 0, out.stdout + out.stderr
    assert max(done_events_per_chunk(db).values()) == 1
    # And the day outside the look-back was left alone
    assert day_state(db, old) == "mapping"
    assert str(old) not in res.stdout
    # And an explicit day runs only what it names, whatever the look-back
    again = cluster.cli(
        "master", "run", "--day", str(yesterday), "--resume-lookback-days", "30", timeout=120
    )
    assert again.returncode == 0 and "resuming" not in again.stdout, again.stdout
    assert day_state(db, old) == "mapping"


@pytest.mark.parametrize("rows", [1_000])
def test_a_stranded_day_with_a_live_master_elsewhere_is_skipped(
    cluster: Cluster, db: Engine
) -> None:
    yesterday, busy = (dt.date.today() - dt.timedelta(days=n) for n in (1, 2))
    res = cluster.cli("seed", "--day", str(yesterday), "--rows", "2000")
    assert res.returncode == 0, res.stderr
    # Given an unfinished run 2 days ago whose master (on another host) is alive
    elsewhere = "elsewhere.example.com:4242:abcdef"
    with db.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", busy, 1, RunParams(), elsewhere)
        assert run is not None
        run_repo.acquire(conn, run.id, elsewhere, 30, force=False)
        conn.execute(update(Run).where(Run.id == run.id).values(heartbeat_at=db_now_plus(3600)))
    cluster.worker()
    # When the nightly command runs
    res = cluster.cli("master", "run", "--day", "yesterday", timeout=300)
    # Then it skips that day with one line, not an error, and runs its own day
    assert res.returncode == 0, res.stdout + res.stderr + cluster.log_tail()
    assert f"skipping merchant_daily/{busy}: " in res.stdout and elsewhere in res.stdout
    assert "Traceback" not in res.stderr
    assert day_state(db, yesterday) == "succeeded" and day_state(db, busy) == "planning"
