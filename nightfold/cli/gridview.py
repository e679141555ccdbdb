"""Rendering of ``nightfold status --days N``: a strip of one cell per day (oldest
to newest, as a scheduler's grid), then one row per day (newest first) with the
latest run's state, its stages' progress and whether it missed the deadline.
Fits 80 columns for the default 14 days."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from nightfold.cli.statusview import _duration, _table

CELLS: dict[str, tuple[str, str]] = {
    "succeeded": ("■", "green"),
    "failed": ("✗", "bold red"),
    "cancelled": ("⊘", "yellow"),
    "planning": ("▶", "cyan"),
    "mapping": ("▶", "cyan"),
    "reducing": ("▶", "cyan"),
    "combining": ("▶", "cyan"),
    "missing": ("·", "dim"),
}
"""Each day's cell in the strip: its latest run's state."""


def _stage(cell: dict[str, int] | None) -> Text:
    if not cell or not cell.get("total"):
        return Text("-", style="dim")
    done, total, dead = cell["done"], cell["total"], cell.get("dead", 0)
    style = "green" if done == total else ("red" if dead else "cyan")
    return Text(f"{done}/{total}" + (f" {dead} dead" if dead else ""), style=style)


def _count(n: int) -> str:
    """123,456,789 -> 123.5M: a column that fits."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n) if n else "-"


def render_days(data: dict[str, Any]) -> RenderableType:
    rows = data["days"]
    deadline = data.get("deadline")
    span = f"{rows[-1]['day']} .. {rows[0]['day']}" if rows else "-"
    head = f"{data['job']}: {len(rows)} days, {span}"
    head += f" (due {deadline} UTC the next day)" if deadline else " (no deadline set)"
    strip = Text("  ")
    for r in reversed(rows):  # oldest first, like a scheduler's grid
        symbol, style = CELLS.get(r["state"], ("?", ""))
        strip.append(symbol, style=("reverse " + style) if r["late"] else style)
        strip.append(" ")
    legend = Text("  ■ succeeded  ✗ failed  ⊘ cancelled  ▶ running  · no run  "
                  "(reverse: late)", style="dim")  # fmt: skip
    table = _table("", "day", "state", "gen", "map", "reduce", "rows", "took", "finished",
                   "late")  # fmt: skip
    for r in rows:
        style = CELLS.get(r["state"], ("?", ""))[1]
        table.add_row(
            r["day"],
            Text(r["state"], style=style),
            str(r["generation"] or "-"),
            _stage(r["chunks"].get("map")),
            _stage(r["chunks"].get("reduce")),
            _count(r["rows_read"]),
            _duration(r["seconds"]) if r["seconds"] is not None else "-",
            (r["finished_at"] or "-")[5:] if r["finished_at"] else "-",
            Text("LATE", style="bold red") if r["late"] else "",
        )
    parts: list[RenderableType] = [Text(head, style="bold"), strip, legend, table]
    for r in rows:
        if r["error"]:
            parts.append(Text(f"  {r['day']}: {r['error']}", style="red"))
    return Group(*parts)
