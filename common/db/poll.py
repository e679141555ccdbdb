"""The embedded transport's poll, bound to an engine.

``db://`` has no broker: its consumer polls the database for queued chunks. The
transport seam does not know about engines, so the composition root
(``nightfold/ops/runtime.py``) binds the query to its engine here and hands the
consumer a plain function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db.chunks import Claimable
from nightfold.common.db.engine import db_errors


def queued_chunks(engine: Engine, url: str) -> Callable[[int, Sequence[int]], list[Claimable]]:
    """``queued(limit, exclude)``: queued chunks of live runs, one short connection
    per poll, database errors mapped to ServiceUnavailable (``url`` names it, masked)."""

    def queued(limit: int, exclude: Sequence[int]) -> list[Claimable]:
        with db_errors(url), engine.connect() as conn:
            return chunk_repo.claimable(conn, limit, exclude)

    return queued
