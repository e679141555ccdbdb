"""The console's routes in-process (Starlette's TestClient) on a SQLite database:
pages render, live regions answer 204 when nothing changed, actions are refused
without credentials, on a read-only console and without the page's form token,
and no password reaches a page. The browser tests (tests/web) drive the same
application as a served process against live runs."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from starlette.testclient import TestClient

from nightfold.common.config import Settings
from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db import workers as worker_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.clock import db_now
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.db.models import Chunk, Run
from nightfold.common.keys import KeyRange
from nightfold.common.params import RunParams
from nightfold.common.states import Stage
from nightfold.web.app import Console, create_app

PASSWORD = "pa55-word"
SECRET_URL = "mysql+pymysql://app:hunter2@db.example:3306/nightfold"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def make_run(engine: Engine, day: dt.date, state: str, *, dead: bool = False) -> int:
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", day, 1, RunParams(), "t")
        assert run is not None
        specs = [ChunkSpec(Stage.MAP, i, KeyRange(b"a%d" % i, b"b%d" % i)) for i in range(3)]
        chunk_repo.insert_plan(conn, run.id, specs)
        error = f"map chunk 1 dead after 3 attempts: cannot reach {SECRET_URL}" if dead else None
        conn.execute(update(Run).where(Run.id == run.id).values(state=state, error=error))
        if dead:
            conn.execute(
                update(Chunk)
                .where(Chunk.run_id == run.id, Chunk.idx == 1)
                .values(state="dead", attempt=3, error=f"cannot reach {SECRET_URL}")
            )
    return run.id


def client(engine: Engine, tmp_path: Path, *, password: str = PASSWORD) -> TestClient:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'n.db'}", web_password=password)
    return TestClient(create_app(Console(settings, engine, None)), base_url="http://127.0.0.1:8650")


def auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"operator:{PASSWORD}".encode()).decode()}


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, html
    return m.group(1)


def test_pages_render_and_mask_every_password(engine: Engine, tmp_path: Path) -> None:
    failed = make_run(engine, dt.date(2026, 11, 21), "failed", dead=True)
    make_run(engine, dt.date(2026, 11, 22), "mapping")
    c = client(engine, tmp_path)
    pages = [
        c.get("/"),
        c.get(f"/runs/{failed}"),
        c.get("/workers"),
        c.get(f"/runs/{failed}?events=all"),
    ]
    for res in pages:
        assert res.status_code == 200
        assert "hunter2" not in res.text and PASSWORD not in res.text
        assert res.headers["content-security-policy"].startswith("default-src 'self'")
    grid, run = pages[0].text, pages[1].text
    assert 'data-day="2026-11-21" data-state="failed"' in grid
    assert 'data-day="2026-11-22" data-state="mapping"' in grid
    assert "mysql+pymysql://app:***@db.example" in run and "Retry 1 dead chunk" in run
    assert c.get("/runs/999").status_code == 404
    assert c.get("/healthz").text == "ok"


def test_a_live_region_answers_204_until_something_changes(engine: Engine, tmp_path: Path) -> None:
    run_id = make_run(engine, dt.date(2026, 11, 22), "failed", dead=True)
    c = client(engine, tmp_path)
    first = c.get(f"/runs/{run_id}?partial=1")
    assert first.status_code == 200 and "<html" not in first.text
    version = first.headers["x-version"]
    assert c.get(f"/runs/{run_id}?partial=1&v={version}").status_code == 204
    with engine.begin() as conn:
        chunk_repo.retry_dead(conn, run_id, "t")
    again = c.get(f"/runs/{run_id}?partial=1&v={version}")
    assert again.status_code == 200 and "mapping" in again.text


def test_an_action_needs_the_operator(engine: Engine, tmp_path: Path) -> None:
    run_id = make_run(engine, dt.date(2026, 11, 22), "mapping")
    c = client(engine, tmp_path)
    res = c.get(f"/actions/cancel?run={run_id}")
    assert res.status_code == 401 and res.headers["www-authenticate"].startswith("Basic ")
    res = c.post("/actions/cancel", data={"run": str(run_id)})
    assert res.status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert c.get(f"/actions/cancel?run={run_id}", headers=wrong).status_code == 401
    assert not _cancel_requested(engine, run_id)


def test_a_read_only_console_refuses_every_action(engine: Engine, tmp_path: Path) -> None:
    run_id = make_run(engine, dt.date(2026, 11, 22), "mapping")
    c = client(engine, tmp_path, password="")
    assert "read-only" in c.get(f"/runs/{run_id}").text
    assert c.get(f"/actions/cancel?run={run_id}", headers=auth()).status_code == 403
    res = c.post("/actions/cancel", data={"run": str(run_id)}, headers=auth())
    assert res.status_code == 403 and not _cancel_requested(engine, run_id)


def test_cancel_with_the_page_token_and_nothing_without(engine: Engine, tmp_path: Path) -> None:
    run_id = make_run(engine, dt.date(2026, 11, 22), "mapping")
    c = client(engine, tmp_path)
    page = c.get(f"/actions/cancel?run={run_id}", headers=auth())
    assert page.status_code == 200
    token = csrf_of(page.text)
    form = {"run": str(run_id), "csrf": token}
    # a forged request: no token, a wrong one, or a foreign Origin / Sec-Fetch-Site
    for data, headers in (
        ({"run": str(run_id)}, auth()),
        ({**form, "csrf": "0" * 64}, auth()),
        (form, {**auth(), "Origin": "http://evil.example"}),
        (form, {**auth(), "Sec-Fetch-Site": "cross-site"}),
    ):
        res = c.post("/actions/cancel", data=data, headers=headers, follow_redirects=False)
        assert res.status_code == 403 and "Refused" in res.text, (data, headers)
    assert not _cancel_requested(engine, run_id)
    # the console's own form
    headers = {**auth(), "Origin": "http://127.0.0.1:8650", "Sec-Fetch-Site": "same-origin"}
    res = c.post("/actions/cancel", data=form, headers=headers, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == f"/runs/{run_id}"
    assert _cancel_requested(engine, run_id)
    shown = c.get(f"/runs/{run_id}")
    assert "cancel requested" in shown.text


def test_retry_without_a_master_launcher_reopens_and_says_what_to_run(
    engine: Engine, tmp_path: Path
) -> None:
    run_id = make_run(engine, dt.date(2026, 11, 22), "failed", dead=True)
    c = client(engine, tmp_path)
    token = csrf_of(c.get(f"/actions/retry?run={run_id}", headers=auth()).text)
    res = c.post("/actions/retry", data={"run": str(run_id), "csrf": token}, headers=auth())
    assert res.status_code == 200
    assert "1 dead map chunk(s) pending again" in res.text
    assert "nightfold master run --day 2026-11-22" in res.text
    # a retried run is no longer failed: the button is gone, a second retry refused
    assert "Retry 1 dead" not in res.text
    assert c.get(f"/actions/retry?run={run_id}", headers=auth()).status_code == 409
    # and a rerun needs a master this console does not start
    rerun = c.get("/actions/rerun?job=merchant_daily&day=2026-11-22", headers=auth())
    assert rerun.status_code == 409


def _cancel_requested(engine: Engine, run_id: int) -> bool:
    with engine.connect() as conn:
        info = run_repo.get_run(conn, run_id)
    assert info is not None
    return info.cancel_requested


def test_the_grid_filters_by_state_and_pages_by_day(engine: Engine, tmp_path: Path) -> None:
    make_run(engine, dt.date(2026, 11, 20), "succeeded")
    make_run(engine, dt.date(2026, 11, 21), "failed", dead=True)
    make_run(engine, dt.date(2026, 11, 22), "mapping")
    c = client(engine, tmp_path)
    failed = c.get("/?state=failed").text
    assert 'data-state="failed"' in failed and 'data-state="mapping"' not in failed
    # two days ending on the 21st: the 22nd's run is out of the window
    window = c.get("/?days=2&until=2026-11-21").text
    assert 'data-day="2026-11-21"' in window and 'data-day="2026-11-22"' not in window
    assert 'data-day="2026-11-20"' in window
    assert "until=2026-11-19" in window  # the link to earlier days
    assert "No run in these days" in c.get("/?job=hourly_orders").text


def test_the_workers_page(engine: Engine, tmp_path: Path) -> None:
    run_id = make_run(engine, dt.date(2026, 11, 22), "mapping")
    with engine.begin() as conn:
        worker_repo.register(conn, "host-a:11:x", "host-a", 11)
        worker_repo.register(conn, "host-b:12:y", "host-b", 12)
        worker_repo.stopped(conn, "host-b:12:y")
        ids = conn.execute(select(Chunk.id).where(Chunk.run_id == run_id)).scalars().all()
        conn.execute(
            update(Chunk)
            .where(Chunk.id == ids[0])
            .values(state="done", owner="host-a:11:x", rows_read=600, done_at=db_now())
        )
        worker_repo.seen(conn, "host-a:11:x", ids[1])
    html = client(engine, tmp_path).get("/workers").text
    assert 'data-worker="host-a:11:x"' in html and 'data-worker="host-b:12:y"' in html
    assert "merchant_daily/2026-11-22#1 map[1]" in html  # what host-a works on
    assert ">10</td><td>1</td>" in html  # 600 rows in the last minute: 10 rows/s; 1 chunk
    assert "stopped" in html
