"""The operator's console in a real browser, against live runs on both backends
(embedded: SQLite + local store + db polling; real: MariaDB + RabbitMQ + HBase,
the console on the data-only database account): a night appears in the grid, a
chunk moves on the timeline while a worker runs, a cancel stops the run, a retry
of the dead chunks makes a failed run succeed; an action without credentials, on
a read-only console, or forged by a foreign page is refused. Every page updates
itself: the tests never reload one.

Time here (2 cores shared with other test runs): embedded about 30 s for the three
tests with their setup; real about 1.5 min of test time plus the seeding of the
real services (5-100 s, depending on the machine's load).
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine, select, update
from sqlalchemy.engine import make_url

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.models import Run
from nightfold.common.errors import RET_RUN_FAILED
from nightfold.common.keys import KeyRange
from nightfold.common.params import RunParams
from nightfold.common.states import Stage
from tests.support.pipeline import PIPELINE_DAY, Cluster, add_poison_row, assert_verifies, run_state
from tests.web.conftest import PASSWORD, ConsoleProc, free_port

pytestmark = pytest.mark.slow

DATE = dt.date.fromisoformat(PIPELINE_DAY)
LIVE = 60_000  # ms: how long a page may take to show what the processes did


def operator(browser: Any) -> Any:
    """A browser context that answers the console's sign-in with the operator's password."""
    return browser.new_context(
        http_credentials={"username": "operator", "password": PASSWORD},
        viewport={"width": 1280, "height": 900},
    )


def mark_loaded(page: Page) -> None:
    """Set a marker on the page's window: gone if the page ever reloads."""
    page.evaluate("window.__loadedOnce = 'yes'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__loadedOnce") == "yes"


def latest_run_id(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(Run.id).order_by(Run.id.desc()).limit(1)).scalar_one())


@pytest.mark.parametrize("rows", [30_000])
def test_watch_a_night_run_and_cancel_it(
    cluster: Cluster, db: Engine, browser: Any, start_console: Callable[..., ConsoleProc]
) -> None:
    # Given a console on a day that has no run yet, and slow chunks (0.4 s a batch)
    cluster.env.update(
        NIGHTFOLD_JOB_MODULES="tests.support.jobs",
        NIGHTFOLD_CHUNK_ROWS="1500",
        NIGHTFOLD_SCAN_BATCH="500",
        NIGHTFOLD_TEST_SLOW_BATCH_SECONDS="0.4",
    )
    console = start_console(cluster)
    context = operator(browser)
    page = context.new_page()
    page.goto(console.url + "/")
    expect(page.get_by_text("No run in these days")).to_be_visible()
    mark_loaded(page)
    # When a worker and the master start on the day
    cluster.worker()
    master = cluster.master(PIPELINE_DAY, "--job", "slow_daily")
    # Then the night appears in the grid, running, without a reload
    cell = page.locator(f'a.cell[data-day="{PIPELINE_DAY}"]')
    expect(cell).to_be_visible(timeout=LIVE)
    expect(cell).to_have_attribute("data-state", "mapping", timeout=LIVE)
    assert_not_reloaded(page)
    # And on its page a chunk runs on the timeline, then is done, without a reload
    cell.click()
    expect(page.locator("#run-state")).to_have_text("mapping")
    mark_loaded(page)
    running = page.locator('svg.timeline rect[data-outcome="running"]').first
    expect(running).to_be_attached(timeout=LIVE)
    chunk = running.get_attribute("data-chunk")
    assert chunk and chunk.startswith("map:")
    done = page.locator(f'svg.timeline rect[data-chunk="{chunk}"][data-outcome="done"]')
    expect(done).to_be_attached(timeout=LIVE)
    expect(page.locator('[data-stage="map"] .done-count')).not_to_have_text("0")
    assert_not_reloaded(page)
    # And the workers page shows the worker alive, on a chunk of this run
    workers = context.new_page()
    workers.goto(console.url + "/workers")
    alive = workers.locator("table.workers tr.alive")
    expect(alive).to_have_count(1)
    expect(alive).to_contain_text(f"slow_daily/{PIPELINE_DAY}#1 map[", timeout=LIVE)
    workers.close()
    # When the operator cancels the run (confirming it)
    page.get_by_role("link", name="Cancel run…").click()
    expect(page.locator("h1")).to_have_text("Cancel the run?")
    page.locator("#confirm").click()
    # Then the page says so, and shows the run stop
    expect(page.locator(".flash")).to_contain_text("cancel requested")
    expect(page.locator("#run-state")).to_have_text("cancelled", timeout=LIVE)
    assert master.wait(timeout=60) == RET_RUN_FAILED, cluster.log_tail()
    assert run_state(db) == "cancelled"
    context.close()


@pytest.mark.parametrize("rows", [5_000])
def test_retry_the_dead_chunks_of_a_failed_run(
    cluster: Cluster, db: Engine, browser: Any, start_console: Callable[..., ConsoleProc]
) -> None:
    # Given a run that failed on a row that makes the job raise
    add_poison_row(cluster)
    cluster.env.update(
        NIGHTFOLD_JOB_MODULES="tests.support.jobs",
        NIGHTFOLD_MAX_ATTEMPTS="1",
        NIGHTFOLD_CHUNK_ROWS="1000",
        # one attempt a chunk: the 4 s test lease would let a stall under load kill one
        NIGHTFOLD_LEASE_SECONDS="30",
    )
    cluster.worker()
    master = cluster.master(PIPELINE_DAY, "--job", "poison_daily")
    assert master.wait(timeout=180) == RET_RUN_FAILED, cluster.log_tail()
    run_id = latest_run_id(db)
    # And the job fixed on the workers
    cluster.stop_all()
    cluster.env["NIGHTFOLD_TEST_POISON_FIXED"] = "1"
    cluster.worker()
    console = start_console(cluster)
    context = operator(browser)
    page = context.new_page()
    page.goto(f"{console.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text("failed")
    expect(page.locator("table.dead")).to_contain_text("poison row")
    # When the operator retries the dead chunks (confirming it)
    page.get_by_role("link", name="Retry 1 dead chunk…").click()
    expect(page.locator("h1")).to_have_text("Retry the dead chunks?")
    page.locator("#confirm").click()
    # Then the console starts a master, and the page shows the same run succeed
    expect(page.locator(".flash")).to_contain_text("1 dead map chunk(s) pending again")
    expect(page.locator(".flash")).to_contain_text("master started")
    mark_loaded(page)
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=120_000)
    assert_not_reloaded(page)
    expect(page.locator("table.events")).to_contain_text("run_retried")
    assert run_state(db) == "succeeded" and latest_run_id(db) == run_id
    assert_verifies(cluster, PIPELINE_DAY, "--job", "poison_daily")
    context.close()


class _Attacker(http.server.BaseHTTPRequestHandler):
    """A foreign site: its page makes the visitor's browser post a cancel."""

    target = ""
    run_id = 0

    def do_GET(self) -> None:
        body = (
            "<html><body><h1>Cute cats</h1>"
            f'<form id="f" method="post" action="{self.target}/actions/cancel">'
            f'<input name="run" value="{self.run_id}"><input name="csrf" value="guess">'
            "</form><script>document.getElementById('f').submit()</script></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[tuple[type[_Attacker], str]]:
    handler = type("Attacker", (_Attacker,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost" is another site than the console's "127.0.0.1"
        yield handler, f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("rows", [1_000])
def test_actions_are_refused_without_the_operator_or_from_another_site(
    cluster: Cluster,
    db: Engine,
    browser: Any,
    start_console: Callable[..., ConsoleProc],
    attacker: tuple[type[_Attacker], str],
) -> None:
    # Given a running run (recorded directly: no process needs to move it)
    with db.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", DATE, 1, RunParams(), "t")
        assert run is not None
        chunk_repo.insert_plan(conn, run.id, [ChunkSpec(Stage.MAP, 0, KeyRange(b"a", b"b"))])
        conn.execute(update(Run).where(Run.id == run.id).values(state="mapping"))
    console = start_console(cluster)
    run_url = f"{console.url}/runs/{run.id}"

    # 1. a visitor without credentials: the console asks for them and does nothing
    anonymous = browser.new_context()
    page = anonymous.new_page()
    page.goto(run_url)
    with page.expect_response(lambda r: "/actions/cancel" in r.url) as answer:
        page.get_by_role("link", name="Cancel run…").click()
    # (the browser asks for a password; cancelled, it shows the 401 without our page)
    assert answer.value.status == 401
    assert answer.value.headers["www-authenticate"].startswith("Basic ")
    res = page.request.post(f"{console.url}/actions/cancel", form={"run": str(run.id)})
    assert res.status == 401 and "Sign in to act" in res.text()
    # no password, no secret on any page the visitor can read
    for url in (console.url + "/", run_url, console.url + "/workers"):
        page.goto(url)
        html = page.content()
        assert PASSWORD not in html and f":{_db_password(console)}@" not in html
        assert ":***@" in html or "sqlite" in html  # the footer names the database, masked
    anonymous.close()

    # 2. the operator, signed in, visits a foreign page that posts a cancel
    handler, evil = attacker
    handler.target, handler.run_id = console.url, run.id
    context = operator(browser)
    page = context.new_page()
    page.goto(run_url)  # signed in: the browser holds the credentials and the cookie
    page.goto(evil)
    expect(page.locator("h1")).to_have_text("Refused: not sent by this console")
    assert "/actions/cancel" in page.url
    context.close()

    # 3. a console without an operator password refuses every action, even signed in
    read_only = start_console(cluster, password=None)
    context = operator(browser)
    page = context.new_page()
    page.goto(f"{read_only.url}/runs/{run.id}")
    expect(page.locator(".mode")).to_have_text("read-only")
    page.get_by_role("link", name="Cancel run…").click()
    expect(page.locator("h1")).to_have_text("Read-only console")
    context.close()

    # Then nobody cancelled the run
    with db.connect() as conn:
        info = run_repo.get_run(conn, run.id)
    assert info is not None and not info.cancel_requested


def _db_password(console: ConsoleProc) -> str:
    password = make_url(console.env["NIGHTFOLD_DATABASE_URL"]).password
    return password or "\0no-password\0"
