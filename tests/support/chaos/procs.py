"""The processes of a trial (a master or worker started as ``python -m nightfold``), the
tracebacks in their logs, and ``deploy/local/services`` for stopping and restarting a
shared service."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import REPO


@dataclass
class Proc:
    role: str
    name: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    spawned_db: dt.datetime | None
    spawned: float
    signalled: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr_text(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def last_error_line(self) -> str:
        lines = [ln for ln in self.stderr_text().splitlines() if ln.startswith("nightfold: error")]
        return lines[-1] if lines else ""


def services_command(action: str, service: str, log: Path) -> tuple[int, float]:
    """``deploy/local/services ACTION SERVICE``; returns (exit code, seconds)."""
    env = dict(os.environ, NIGHTFOLD_PYTHON=sys.executable)
    started = time.monotonic()
    with log.open("ab") as fh:
        fh.write(f"\n$ deploy/local/services {action} {service}\n".encode())
        fh.flush()
        rc = subprocess.run(
            [str(REPO / "deploy" / "local" / "services"), action, service],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=400,
        ).returncode
    return rc, time.monotonic() - started


_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} +(\w+) +(\S+?)\[\d+\]: (.*)$")


def tracebacks(log_text: str) -> list[str]:
    """Where each traceback in a process's stderr comes from: the log record that
    carries it (``logger: message``), or "(no log record)" for an uncaught one."""
    found = []
    header: str | None = None
    for line in log_text.splitlines():
        m = _RECORD.match(line)
        if m:
            header = f"{m.group(2)}: {m.group(3)}"
        elif line.startswith("Exception in thread"):  # threading's excepthook: uncaught
            header = None
        elif line.startswith("Traceback"):
            found.append(header[:200] if header else "(no log record)")
    return found
