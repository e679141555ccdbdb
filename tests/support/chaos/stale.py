"""No stale cells: after a ``--rerun`` of a day whose raw rows changed, the day's
summary rows must be exactly the new generation's. The check reads the day's whole
summary table straight from HBase (every row of the day, every family and column,
not only what ``nightfold verify`` reads) and compares it cell for cell with the
oracle recomputed from the raw rows as they are now: a row or a column that is
stored but not expected is stale, one that differs or is missing is wrong."""

from __future__ import annotations

from dataclasses import dataclass, field

import happybase

from nightfold.common.jobs import get_job
from nightfold.common.keys import SEP, day_token, summary_key
from nightfold.common.store import HBaseURL, open_store, parse_store_url
from nightfold.ops.verify import compute_expected
from tests.support.chaos.rig import Rig

Cells = dict[bytes, dict[bytes, bytes]]
"""row key -> column (``family:qualifier``) -> value."""


@dataclass
class CellDiff:
    stale_rows: list[bytes] = field(default_factory=list)
    stale_cells: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(row, column) stored but not expected, the cells of stale rows included."""
    wrong_cells: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(row, column) expected but missing, or stored with other bytes."""


def diff_cells(expected: Cells, stored: Cells) -> CellDiff:
    """Cell-for-cell comparison of a day's summary rows (a pure function)."""
    out = CellDiff()
    for row in sorted(expected.keys() | stored.keys()):
        want, have = expected.get(row), stored.get(row, {})
        if want is None:
            out.stale_rows.append(row)
            out.stale_cells += [(row, col) for col in sorted(have)]
            continue
        for col in sorted(want.keys() | have.keys()):
            if col not in want:
                out.stale_cells.append((row, col))
            elif have.get(col) != want[col]:
                out.wrong_cells.append((row, col))
    return out


def read_day_rows(store_url: str, table: str, day_prefix: bytes) -> Cells:
    """Every row of ``table`` whose key starts with ``day_prefix``, all columns."""
    spec = parse_store_url(store_url)
    assert isinstance(spec, HBaseURL)
    conn = happybase.Connection(
        spec.host, spec.port, table_prefix=spec.table_prefix, timeout=60_000
    )
    try:
        return {bytes(k): dict(v) for k, v in conn.table(table).scan(row_prefix=day_prefix)}
    finally:
        conn.close()


def check_no_stale_cells(rig: Rig) -> None:
    """The day's summary table against the oracle; counts go to the trial's result."""
    p, r = rig.plan, rig.result
    job = get_job(p.job)
    prefix = day_token(p.day) + SEP
    store = open_store(rig.env.store_url)
    try:
        oracle = compute_expected(store, job, p.day, p.salt_buckets)
    finally:
        store.close()
    expected = {summary_key(p.day, group): cells for group, cells in oracle.items()}
    stored = read_day_rows(rig.env.store_url, job.summary_table, prefix)
    d = diff_cells(expected, stored)
    r.stale_rows += len(d.stale_rows)
    r.stale_cells += len(d.stale_cells)
    rig.log(
        f"summary table: {len(stored)} rows stored, {len(expected)} expected; "
        f"{len(d.stale_rows)} stale rows, {len(d.stale_cells)} stale cells, "
        f"{len(d.wrong_cells)} wrong cells"
    )
    if d.stale_rows or d.stale_cells:
        show = ", ".join(f"{k.decode(errors='replace')} {c.decode()}" for k, c in d.stale_cells[:4])
        r.failure(
            "stale_summary_after_rerun",
            f"stale summary after --rerun: {len(d.stale_rows)} rows and {len(d.stale_cells)} "
            f"cells stored that the new raw rows do not produce (e.g. {show})",
        )
    if d.wrong_cells:
        show = ", ".join(f"{k.decode(errors='replace')} {c.decode()}" for k, c in d.wrong_cells[:4])
        r.problem(f"{len(d.wrong_cells)} summary cells missing or different (e.g. {show})")
