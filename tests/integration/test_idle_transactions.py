"""A transaction frozen in its client does not hold MariaDB's locks for ever
(``common/db/engine.py``, ``IDLE_TRANSACTION_SECONDS``)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from nightfold.common.db import engine as engine_module
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.db.models import Run
from nightfold.common.db.runs import RunParams, create_run
from tests.support.databases import fresh_database

DAY = dt.date(2026, 11, 20)


def test_every_connection_bounds_its_idle_transactions(tmp_path: Path) -> None:
    with fresh_database("mariadb", tmp_path) as url:
        eng = make_engine(url)
        with eng.connect() as conn:
            got = conn.execute(text("SELECT @@session.idle_transaction_timeout")).scalar_one()
        eng.dispose()
    assert int(got) == engine_module.IDLE_TRANSACTION_SECONDS


def test_a_frozen_holder_of_the_run_row_is_cut_off_and_its_lock_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given connections whose idle transactions end after 2 s (15 in production)
    monkeypatch.setattr(engine_module, "IDLE_TRANSACTION_SECONDS", 2)
    with fresh_database("mariadb", tmp_path) as url:
        eng = make_engine(url)
        upgrade(eng)
        with eng.begin() as conn:
            run = create_run(conn, "merchant_daily", DAY, 1, RunParams(), "test")
        assert run is not None
        # And a "worker" that locked the run's row and then froze, its transaction open
        frozen = eng.connect()
        frozen.execute(select(Run.id).where(Run.id == run.id).with_for_update())
        time.sleep(3)
        # When the "master" updates that row
        started = time.monotonic()
        with eng.begin() as conn:
            conn.execute(update(Run).where(Run.id == run.id).values(error="x"))
        # Then it did not wait for the frozen one, whose connection is gone
        assert time.monotonic() - started < 2
        with pytest.raises(DBAPIError):
            frozen.execute(select(Run.id)).all()
        frozen.invalidate()
        frozen.close()
        eng.dispose()
