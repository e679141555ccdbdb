"""One trial: its own database (migrated, dropped at the end), its day seeded, two
workers and a master started, each fault fired when its moment comes (or marked missed
when the run is past its window), then the checks."""

from __future__ import annotations

import math
import random
import shutil
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import upgrade
from nightfold.common.keys import raw_key
from nightfold.common.store import open_store
from nightfold.ops.seeding import seed_day
from tests.support.chaos import checks, faults, nightly, rejects, rerun
from tests.support.chaos.observe import Snap
from tests.support.chaos.plan import (
    MASTER_KILLS,
    NIGHTLY,
    PHASES,
    SEGMENTS,
    WORKER_FAULTS,
    Fault,
)
from tests.support.chaos.result import TrialResult
from tests.support.chaos.rig import Rig, TrialTimeout
from tests.support.services import unique_name


class Trial(Rig):
    POLL = 0.004

    def run(self) -> TrialResult:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log(self.plan.describe())
        try:
            with self._database():
                self.proc_env = self.base_env()
                self._seed()
                self._drive()
                checks.assess(self)
        except TrialTimeout as exc:
            self.result.problem(f"hang: {exc}")
        except Exception as exc:
            self.result.problem(f"harness error: {type(exc).__name__}: {exc}")
            self.log(traceback.format_exc())
        finally:
            self.kill_all()
            self.drop_queue()
        self.result.seconds = time.monotonic() - self.started
        if self.result.ok and not self.result.anomalies and not self.env.keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.result.logs = str(self.dir)
        return self.result

    @contextmanager
    def _database(self) -> Iterator[None]:
        name = unique_name("nightfold_chaos")
        admin = create_engine(self.env.database_url)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}`"))
        self.db_url = (
            make_url(self.env.database_url).set(database=name).render_as_string(hide_password=False)
        )
        admin.dispose()
        self.engine = make_engine(self.db_url, pool_size=2)
        try:
            upgrade(self.engine)
            yield
        finally:
            self.engine.dispose()
            admin = create_engine(self.env.database_url)  # the server may have restarted
            try:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            except Exception as exc:
                self.log(f"could not drop {name}: {exc}")
            admin.dispose()

    def _seed(self) -> None:
        p = self.plan
        store = open_store(self.env.store_url)
        try:
            n = seed_day(store, p.day, p.rows, salt_buckets=p.salt_buckets, seed=p.seed)
            if p.scenario == "poison":
                salt = random.Random(p.seed).randrange(p.salt_buckets)
                key = raw_key(salt, p.day, "m000001", "POISON")
                store.put_many("nightfold_raw", [(key, {b"o:merchant": b"m000001"})])
                n += 1
        finally:
            store.close()
        self.result.rows_expected = n
        self.log(f"seeded {n} rows for {p.day}")

    def _drive(self) -> None:
        p = self.plan
        self.worker()
        self.worker()
        self.master()
        pending = list(p.faults)
        for f in pending:
            if f.window == ("start", "start"):  # two masters at once
                self.master()
                self.fired(f, "two_masters", "second master spawned with the first")
        pending = [f for f in pending if not f.fired]
        while True:
            self.check_time(f"driving (pending: {[f.kind for f in pending]})")
            want_claims = any(f.kind in (*WORKER_FAULTS, *SEGMENTS) for f in pending)
            snap = self.snap(claims=want_claims)
            if snap is None:
                continue
            for f in list(pending):
                if self._missed(f, snap):
                    f.missed = True
                    pending.remove(f)
                    self.log(f"missed {f.describe()} (phase now {snap.phase})")
                elif self._due(f, snap):
                    pending.remove(f)
                    faults.fire(self, f, snap)
                    break  # the world changed: take a fresh snapshot
            if not self.masters_alive():
                for f in pending:
                    f.missed = True
                    self.log(f"missed {f.describe()}: no master left")
                break
            narrow = any(f.kind in (*MASTER_KILLS, *WORKER_FAULTS, *SEGMENTS) for f in pending)
            time.sleep(self.POLL if narrow else 0.02 if pending else 0.05)
        if p.scenario == "poison":
            faults.poison_rerun(self)
        elif p.scenario == "store_rejects":
            rejects.follow_up(self)
        elif p.scenario == "rerun_changed_raw":
            rerun.follow_up(self)
        elif p.scenario in NIGHTLY:
            nightly.follow_up(self)

    # -- when a fault fires ----------------------------------------------------------
    def _missed(self, f: Fault, snap: Snap) -> bool:
        last = PHASES.index(f.window[1])
        return PHASES.index(snap.phase) > last

    def _due(self, f: Fault, snap: Snap) -> bool:
        phase = PHASES.index(snap.phase)
        if phase < PHASES.index(f.window[0]):
            return False
        if snap.phase == "map" and f.frac:
            total = snap.total("map")
            if snap.n("map", "done") < max(1, math.ceil(f.frac * total)):
                return False
        if f.kind == "master_kill_publish":
            return snap.unpublished > 0
        if f.kind == "master_kill_finishing":
            return bool(self.masters_alive())
        if f.kind in WORKER_FAULTS or f.kind in SEGMENTS:
            return self.victim(snap, f.stage) is not None
        return True
