"""Rendering of ``nightfold status`` (once, or live with ``--watch``) with rich.

Readable at 80 columns and without a terminal (rich then assumes 80): tables
have no vertical rules, headers never shrink below their own width, and long
worker or master ids fold onto a second line instead of ending in an ellipsis.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

STATES = ("pending", "queued", "claimed", "done", "dead")
BAR_WIDTH = 10


def _table(
    title: str, *columns: str, justify: JustifyMethod = "left", fold: tuple[str, ...] = ()
) -> Table:
    """A compact table whose headers are never cut: each column is at least as
    wide as its header; the ``fold`` columns (ids) wrap instead of shrinking."""
    table = Table(
        title=Text(title, overflow="fold"),
        title_justify="left",
        expand=False,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for i, col in enumerate(columns):
        table.add_column(
            col,
            min_width=len(col),
            justify="left" if i == 0 or col in fold else justify,
            overflow="fold",
            no_wrap=col not in fold,
        )
    return table


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def master_line(r: dict[str, Any]) -> Text | None:
    """Who drives the run, or, plainly, that nothing does."""
    m = r.get("master") or {}
    age = m.get("heartbeat_age_s")
    if r.get("stalled"):
        since = f" for {_duration(age)}" if age is not None else ""
        last = m.get("last_owner") or "none"
        return Text(
            f"  STALLED: no live master{since} (last: {last}); start "
            f"`nightfold master run --job {r['job']} --day {r['day']}` to resume",
            style="bold red",
        )
    if m.get("owner"):
        beat = f"{age:,.1f}s ago" if age is not None else "never"
        return Text(f"  master {m['owner']}, heartbeat {beat}")
    return None


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
        table = _table(title, "stage", "progress", *STATES, "chunks/s", "ETA", justify="right")
        elapsed = r["elapsed_s"] or 0.0
        for stage in ("map", "reduce", "combine"):
            counts = r["chunks"].get(stage, {})
            if stage == "combine" and not counts:
                continue  # only a sharded job's day with hot groups has a combine stage
            total = sum(counts.values())
            done = counts.get("done", 0)
            rate = done / elapsed if elapsed and done else None
            table.add_row(
                stage,
                ProgressBar(total=max(total, 1), completed=done, width=BAR_WIDTH),
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
        line = master_line(r)
        if line is not None:
            parts.append(line)
        if r["error"]:
            parts.append(Text(f"  error: {r['error']}", style="red"))
        if r["slowest"]:
            slow = _table("slowest chunks", "chunk", "state", "seconds", "rows", "worker",
                          fold=("worker",))  # fmt: skip
            for c in r["slowest"]:
                slow.add_row(
                    f"{c['stage']}[{c['idx']}]",
                    c["state"],
                    f"{c['seconds']:.2f}",
                    f"{c['rows']:,}",
                    c["owner"] or "-",
                )
            parts.append(slow)
    workers = _table(
        f"workers alive: {len(data['workers'])}",
        "worker",
        "current chunk",
        "last heartbeat",
        fold=("worker",),
    )
    for w in data["workers"]:
        workers.add_row(w["id"], str(w["current_chunk"] or "-"), w["last_seen_at"])
    parts.append(workers)
    return Group(*parts)
