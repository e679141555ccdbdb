"""The console in a real browser: Debian's chromium driven by Playwright.

``deploy/local/browser`` installs chromium (``make test`` runs it); Playwright's own
browser download cannot work here, so it is launched by path. Locally a missing
chromium skips these tests; with ``CI=true`` it fails them, like a missing service.
The pipeline fixtures (``cluster``: embedded and real backends) are the
integration tests' own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.integration.conftest import (  # noqa: F401 (fixtures)
    broker_url,
    cluster,
    db,
    hbase_service_url,
    hbase_url,
    rabbitmq_service_url,
    rows,
    seed_args,
)
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.pipeline import Cluster
from tests.support.services import in_ci, service_url

PASSWORD = "console-test-pw"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        why = f"no chromium at {CHROMIUM} (deploy/local/browser installs it)"
        if in_ci():
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ConsoleProc:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def console_env(pipeline: Cluster) -> dict[str, str]:
    """The cluster's settings, but on the real MariaDB the data-only account
    (deploy/mariadb/app-user.sh) instead of the schema owner: all the console needs."""
    env = dict(pipeline.env)
    url = env["NIGHTFOLD_DATABASE_URL"]
    if url.startswith("mysql"):
        app = service_url("NIGHTFOLD_TEST_APP_DATABASE_URL")
        if app is None:
            pytest.fail("NIGHTFOLD_TEST_APP_DATABASE_URL is not set (make services-up)")
        database = make_url(url).database
        env["NIGHTFOLD_DATABASE_URL"] = (
            make_url(app).set(database=database).render_as_string(hide_password=False)
        )
    return env


@pytest.fixture
def start_console(tmp_path: Path) -> Iterator[Callable[..., ConsoleProc]]:
    """Start ``nightfold web`` for a cluster (a served process, as an operator runs it)."""
    procs: list[ConsoleProc] = []

    def start(pipeline: Cluster, *, password: str | None = PASSWORD) -> ConsoleProc:
        port = free_port()
        env = console_env(pipeline)
        env.pop("NIGHTFOLD_WEB_PASSWORD", None)
        if password:
            env["NIGHTFOLD_WEB_PASSWORD"] = password
        log = tmp_path / f"console-{port}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nightfold",
                "web",
                "--port",
                str(port),
                "--master-logs",
                str(tmp_path / "console-masters"),
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        console = ConsoleProc(f"http://127.0.0.1:{port}", proc, log, env)
        procs.append(console)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(console.url + "/healthz", timeout=2) as res:
                    if res.status == 200:
                        return console
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start:\n{console.log_text()}")
            time.sleep(0.2)

    yield start
    for c in procs:
        c.proc.terminate()
    for c in procs:
        try:
            c.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()
