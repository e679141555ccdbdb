"""Rendering of ``nightfold status`` (once, or live with ``--watch``) with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

STATES = ("pending", "queued", "claimed", "done", "dead")


def _eta(done: int, total: int, rate: float | None) -> str:
    if not total or done >= total or not rate:
        return "-"
    return f"{(total - done) / rate:,.0f}s"


def render(data: dict[str, Any]) -> RenderableType:
    """One screen: each run with a bar per stage, then workers, then slow chunks."""
    parts: list[RenderableType] = []
    if not data["runs"]:
        parts.append(Text("no runs yet"))
    for r in data["runs"]:
        title = f"run {r['label']}  [{r['state']}]" + (
            "  (cancel requested)" if r["cancel_requested"] else ""
        )
        table = Table(title=title, title_justify="left", expand=False)
        table.add_column("stage")
        table.add_column("progress", width=30)
        for col in (*STATES, "chunks/s", "ETA"):
            table.add_column(col, justify="right")
        elapsed = r["elapsed_s"] or 0.0
        for stage in ("map", "reduce"):
            counts = r["chunks"].get(stage, {})
            total = sum(counts.values())
            done = counts.get("done", 0)
            rate = done / elapsed if elapsed and done else None
            table.add_row(
                stage,
                ProgressBar(total=max(total, 1), completed=done, width=30),
                *(str(counts.get(k, 0)) for k in STATES),
                f"{rate:,.1f}" if rate else "-",
                _eta(done, total, rate),
            )
        parts.append(table)
        rate = f"{r['rows_per_s']:,.0f} rows/s" if r["rows_per_s"] else "- rows/s"
        parts.append(
            Text(
                f"  rows {r['rows_read']:,} (malformed {r['rows_malformed']:,}), "
                f"{rate}, elapsed {elapsed:,.1f}s"
            )
        )
        if r["error"]:
            parts.append(Text(f"  error: {r['error']}", style="red"))
        if r["slowest"]:
            slow = Table(title="slowest chunks", title_justify="left", expand=False)
            for col in ("chunk", "state", "seconds", "rows", "worker"):
                slow.add_column(col)
            for c in r["slowest"]:
                slow.add_row(
                    f"{c['stage']}[{c['idx']}]",
                    c["state"],
                    f"{c['seconds']:.2f}",
                    f"{c['rows']:,}",
                    c["owner"] or "-",
                )
            parts.append(slow)
    workers = Table(title=f"workers alive: {len(data['workers'])}", title_justify="left")
    for col in ("worker", "current chunk", "last heartbeat"):
        workers.add_column(col)
    for w in data["workers"]:
        workers.add_row(w["id"], str(w["current_chunk"] or "-"), w["last_seen_at"])
    parts.append(workers)
    return Group(*parts)
