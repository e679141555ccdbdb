"""Running the real ``nightfold`` command in a subprocess, as a user would, and
checking the shape of its errors: one line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def nightfold(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``nightfold *args`` with only the ``NIGHTFOLD_*`` variables of ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    return subprocess.run(
        [sys.executable, "-m", "nightfold", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr (asserting there is exactly one, and no traceback)."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def final_error(res: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The ``nightfold: error:`` line a long-running command ended with.

    A worker or master logs while it runs, so its stderr is not one line; its
    last line is the error, nothing on stderr is a traceback, and no secret
    appears anywhere in it.
    """
    assert "Traceback" not in res.stderr, res.stderr
    for secret in secrets:
        assert secret not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("nightfold: error: "), res.stderr
    return lines[-1]
