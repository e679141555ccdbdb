"""``nightfold status --days`` rendering: one cell per day oldest first, one row per
day newest first, LATE where the deadline passed; fits 80 columns when piped."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from nightfold.cli.gridview import render_days


def day(d: str, state: str, *, late: bool = False, error: str | None = None) -> dict[str, Any]:
    chunks = {} if state == "missing" else {
        "map": {"done": 20, "total": 20, "dead": 0},
        "reduce": {"done": 3 if state != "succeeded" else 8, "total": 8,
                   "dead": 1 if state == "failed" else 0},
    }  # fmt: skip
    return {"day": d, "state": state, "generation": 0 if state == "missing" else 2,
            "chunks": chunks, "rows_read": 123_456_789 if chunks else 0,
            "seconds": 5000.0 if chunks else None,
            "finished_at": "2026-11-23 06:10" if chunks else None,
            "due_at": "2026-11-23 07:00 UTC", "late": late, "error": error}  # fmt: skip


def shown(data: dict[str, Any]) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(render_days(data))
    return out.getvalue()


def test_grid_at_80_columns() -> None:
    rows = [
        day("2026-11-24", "mapping"),
        day("2026-11-23", "failed", late=True, error="reduce chunk 3 dead after 3 attempts"),
        day("2026-11-22", "missing", late=True),
        day("2026-11-21", "succeeded"),
    ]
    text = shown({"job": "merchant_daily", "deadline": "07:00", "days": rows})
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert "merchant_daily: 4 days, 2026-11-21 .. 2026-11-24 (due 07:00 UTC" in text
    assert lines[1].split() == ["■", "·", "✗", "▶"], "oldest first"
    body = [line for line in lines if line[:4] == "2026"]
    assert [line.split()[0] for line in body] == [r["day"] for r in rows], "newest first"
    assert "LATE" in body[1] and "LATE" in body[2] and "LATE" not in body[3]
    assert "3/8 1 dead" in body[1] and "123.5M" in body[3] and "1h23m" in body[3]
    assert "2026-11-23: reduce chunk 3 dead after 3 attempts" in text


def test_no_deadline_said_plainly() -> None:
    text = shown({"job": "j", "deadline": None, "days": [day("2026-11-22", "missing")]})
    assert "(no deadline set)" in text and "LATE" not in text
