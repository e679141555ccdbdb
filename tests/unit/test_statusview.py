"""``nightfold status`` rendering: readable when piped (no terminal) at 80
columns, and plain about a run that no live master drives."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from nightfold.cli.statusview import STATES, render

WORKER = "worker-node-with-a-long-hostname.prod.example.com:1234567:abcdef"
MASTER = "master-host-with-a-long-name.prod.example.com:7654321:fedcba"
HEADERS = ("stage", "progress", *STATES, "chunks/s", "ETA", "chunk", "state", "seconds",
           "rows", "worker", "current chunk", "last heartbeat")  # fmt: skip


def snapshot(*, stalled: bool, owner: str | None) -> dict[str, Any]:
    return {
        "runs": [
            {
                "id": 1,
                "label": "merchant_daily/2026-11-22#1",
                "job": "merchant_daily",
                "day": "2026-11-22",
                "state": "mapping",
                "cancel_requested": False,
                "error": None,
                "chunks": {
                    "map": {"pending": 12345, "queued": 64, "claimed": 8, "done": 10000},
                    "reduce": {"pending": 8},
                },
                "rows_read": 123456789,
                "rows_malformed": 1234,
                "elapsed_s": 1234.5,
                "rows_per_s": 100000.0,
                "slowest": [
                    {
                        "chunk": 5,
                        "stage": "map",
                        "idx": 12345,
                        "state": "claimed",
                        "owner": WORKER,
                        "seconds": 1234.56,
                        "rows": 50000,
                    },
                ],
                "master": {
                    "owner": owner,
                    "last_owner": MASTER,
                    "heartbeat_age_s": 252.3,
                    "stale_after_s": 30.0,
                },
                "stalled": stalled,
            }
        ],
        "workers": [
            {
                "id": WORKER,
                "host": "h",
                "pid": 1,
                "current_chunk": 123456,
                "last_seen_at": "2026-11-29 03:40:56.123456",
            },
        ],
    }


def piped(data: dict[str, Any], width: int = 80) -> str:
    """What ``status`` prints into a file: no terminal, ``width`` columns."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    assert not console.is_terminal
    console.print(render(data))
    return out.getvalue()


def test_piped_at_80_columns_cuts_nothing() -> None:
    text = piped(snapshot(stalled=False, owner=MASTER))
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for header in HEADERS:
        assert header in text, header
    assert "[mapping]" in text  # the state in the title is not eaten as markup
    joined = "".join(text.split())  # long ids may fold onto the next line, never be cut
    for value in (WORKER, MASTER, "12345", "10000", "1,533s", "2026-11-2903:40:56.123456"):
        assert value in joined, value
    assert "heartbeat 252.3s ago" in " ".join(text.split())


def test_a_run_without_a_live_master_says_stalled() -> None:
    text = piped(snapshot(stalled=True, owner=None))
    flat = " ".join(text.split())
    assert "STALLED: no live master for 4m12s" in flat
    assert MASTER in "".join(text.split())
    assert "nightfold master run --job merchant_daily --day 2026-11-22" in flat
    assert "…" not in text


def test_a_live_master_is_not_stalled() -> None:
    assert "STALLED" not in piped(snapshot(stalled=False, owner=MASTER))
