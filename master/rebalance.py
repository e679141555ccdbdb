"""Run-time rebalancing: when no map chunk is waiting, ask the owner of the
running chunk with the most rows behind it to split it.

Like Cloud Dataflow's dynamic work rebalancing, the trigger is idle capacity,
not a forecast: once the queue of map chunks is empty, any worker that finishes
has nothing to do, so the largest running chunk (by rows read so far: a chunk
much larger than planned has read the most) is asked to split. One request at
a time per run: the tail goes to the queue, an idle worker claims it, and only
when the queue is empty again is the next one asked. The owner decides where
to cut, or declines when too little is left (:mod:`nightfold.worker.checkpoint`);
a declined claim is not asked again. Splits therefore stop by themselves when
every chunk left is small or every worker is busy.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from nightfold.common.db import segments as segment_repo
from nightfold.common.db.segments import SPLIT_NONE, SPLIT_REQUESTED, SPLITS_OFF, Running


def pick_split(waiting: int, running: Sequence[Running], min_rows: int) -> Running | None:
    """The chunk to ask for a split, or None: only when no map chunk waits and no
    request is outstanding, the running chunk that has read the most, if it has
    read at least ``min_rows`` (a chunk just claimed has shown nothing yet)."""
    if waiting or min_rows >= SPLITS_OFF or any(r.split_state == SPLIT_REQUESTED for r in running):
        return None
    candidates = [r for r in running if r.split_state == SPLIT_NONE and r.rows_read >= min_rows]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.rows_read, -r.idx))


def request_split(conn: Connection, run_id: int, min_rows: int, actor: str) -> Running | None:
    """Ask for a split if :func:`pick_split` finds a chunk; the chunk asked, if any."""
    waiting, running = segment_repo.split_view(conn, run_id)
    chosen = pick_split(waiting, running, min_rows)
    if chosen is None or not segment_repo.request_split(conn, run_id, chosen.chunk_id, actor):
        return None
    return chosen
