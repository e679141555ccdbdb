"""``nightfold demo`` (what ``make demo`` runs), end to end on the embedded backends
with a small day: it succeeds, verifies, and its output fits an 80-column terminal."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.cli import nightfold


def test_demo_runs_verifies_and_fits_80_columns(tmp_path: Path) -> None:
    res = nightfold(
        "demo",
        "--rows",
        "20000",
        "--workers",
        "2",
        "--chunk-rows",
        "2000",
        "--dir",
        str(tmp_path / "demo"),
        env={"COLUMNS": "80"},
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "succeeded" in out and "verify: OK" in out, out
    table = out[out.index("top merchants") :].splitlines()[1:12]
    assert all("…" not in line and len(line) <= 80 for line in table), "\n".join(table)
    # It ends with the one command that opens the web console on its data, and the
    # console, started with that command as printed, shows the demo's run
    assert "see this night in the web console" in out
    command = out.strip().splitlines()[-1]
    _console_shows_the_demo_run(shlex.split(command), tmp_path)


def _console_shows_the_demo_run(command: list[str], tmp_path: Path) -> None:
    assert command[1] == "web" and Path(command[0]).exists(), command
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "console.log").open("wb")
    proc = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        grid = ""
        deadline = time.monotonic() + 60
        while not grid:
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as res:
                    grid = res.read().decode()
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "console.log"
                ).read_text()
                time.sleep(0.2)
        m = re.search(r'href="(/runs/\d+)" data-day="2026-11-22" data-state="succeeded"', grid)
        assert m, grid
        with urllib.request.urlopen(base + m.group(1), timeout=10) as res:
            page = res.read().decode()
        assert "merchant_daily/2026-11-22#1" in page and 'class="timeline' in page
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_demo_refuses_a_bad_argument(tmp_path: Path) -> None:
    res = nightfold("demo", "--workers", "0", "--dir", str(tmp_path / "demo"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--workers" in res.stderr
