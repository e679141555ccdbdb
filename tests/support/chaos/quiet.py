"""Waiting for quiet: the services are shared with other people's tests, so before a
trial restarts one, let the nightfold and pytest processes this harness did not start
finish first (up to a limit)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def foreign_users() -> list[str]:
    """Command lines of nightfold and pytest processes this harness did not start:
    someone else's tests, which a service restart would break."""
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) in mine:
            continue  # a child of ours
        line = b" ".join(argv).decode(errors="replace").strip()
        if "python" in line and ("nightfold" in line or "pytest" in line):
            found.append(line[:160])
    return found


def wait_for_quiet(limit: float, say: Callable[[str], None]) -> None:
    """Before a trial that restarts a shared service, let others' tests finish first
    (up to ``limit`` seconds; then go ahead)."""
    deadline = time.monotonic() + limit
    others = foreign_users()
    if others:
        say(f"chaos: waiting up to {limit:.0f}s for other nightfold/pytest processes: {others[:3]}")
    while others and time.monotonic() < deadline:
        time.sleep(2)
        others = foreign_users()
