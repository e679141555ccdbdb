"""hourly_orders: the merge laws that make its summaries byte-identical however a day
is chunked, and one real run on nightfold's embedded backends (seed, master, worker
processes, verify), with the job found through its entry point."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from hourly_orders.job import HourlyOrders, HourTotals
from hypothesis import given
from hypothesis import strategies as st

from nightfold import MapOutput
from nightfold.common.keys import day_token, prefix_range
from nightfold.common.store import open_store

JOB = HourlyOrders()
DAY = dt.date(2026, 11, 22)
MIDNIGHT = int(dt.datetime(2026, 11, 22, tzinfo=dt.UTC).timestamp())

totals = st.builds(HourTotals, *[st.integers(0, 10**12)] * 4)


@st.composite
def raw_rows(draw: st.DrawFn) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Raw order rows as nightfold stores them, some of them unreadable."""
    rows = []
    for i in range(draw(st.integers(0, 60))):
        cols = {
            b"o:ts": b"%d" % (MIDNIGHT + draw(st.integers(0, 86_399))),
            b"o:amount_cents": b"%d" % draw(st.integers(0, 10**7)),
            b"o:status": draw(st.sampled_from([b"paid", b"paid", b"refunded"])),
        }
        if draw(st.integers(0, 9)) == 0:  # about one row in ten is broken
            column = draw(st.sampled_from(sorted(cols)))
            cols[column] = draw(st.sampled_from([b"", b"x", b"-1", b"shipped"]))
        rows.append((b"%02d|20261122|m1|o%06d" % (i % 16, i), cols))
    return rows


def fold(rows: list[tuple[bytes, Mapping[bytes, bytes]]]) -> MapOutput[HourTotals]:
    out: MapOutput[HourTotals] = MapOutput()
    JOB.map_rows(rows, out)
    return out


# -- the laws ----------------------------------------------------------------------------


@given(totals, totals, totals)
def test_merge_is_associative(a: HourTotals, b: HourTotals, c: HourTotals) -> None:
    assert JOB.merge(JOB.merge(a, b), c) == JOB.merge(a, JOB.merge(b, c))


@given(totals, totals)
def test_merge_is_commutative(a: HourTotals, b: HourTotals) -> None:
    assert JOB.merge(a, b) == JOB.merge(b, a)


@given(totals)
def test_encoding_is_canonical_and_reversible(a: HourTotals) -> None:
    data = JOB.encode(a)
    assert JOB.decode(data) == a
    assert JOB.encode(JOB.decode(data)) == data


@given(raw_rows(), st.data())
def test_any_chunking_and_merge_order_give_the_same_bytes(
    rows: list[tuple[bytes, dict[bytes, bytes]]], data: st.DataObject
) -> None:
    # Given the day folded in one piece
    whole = fold(list(rows))
    expected = {g: JOB.finalize(g, p) for g, p in whole.partials.items()}
    # When it is cut into chunks, each folded, encoded and decoded (as the partials
    # table does), and the partials are merged in a shuffled order
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=6)))
    bounds = [0, *cuts, len(rows)]
    chunks = [fold(rows[a:b]) for a, b in itertools.pairwise(bounds)]
    pieces = [(g, JOB.encode(p)) for out in chunks for g, p in out.partials.items()]
    random.Random(data.draw(st.integers())).shuffle(pieces)
    merged: dict[str, HourTotals] = {}
    for group, blob in pieces:
        partial = JOB.decode(blob)
        merged[group] = JOB.merge(merged[group], partial) if group in merged else partial
    # Then every summary cell is byte-identical, and no row is lost or counted twice
    assert {g: JOB.finalize(g, p) for g, p in merged.items()} == expected
    assert sum(c.rows_read for c in chunks) == whole.rows_read == len(rows)
    assert sorted(r for c in chunks for r in c.rejects) == sorted(whole.rejects)


def test_groups_are_hours_and_bad_rows_are_quarantined() -> None:
    out = fold(
        [
            (b"k1", {b"o:ts": b"%d" % (MIDNIGHT + 3600 + 5), b"o:amount_cents": b"250",
                     b"o:status": b"paid"}),
            (b"k2", {b"o:ts": b"%d" % (MIDNIGHT + 3600 + 9), b"o:amount_cents": b"100",
                     b"o:status": b"refunded"}),
            (b"k3", {b"o:ts": b"soon", b"o:amount_cents": b"1", b"o:status": b"paid"}),
        ]
    )  # fmt: skip
    assert out.partials == {"01": HourTotals(1, 250, 1, 100)}
    assert (out.rows_read, out.rows_malformed, out.rejects) == (3, 1, [(b"k3", "bad_ts")])
    assert JOB.finalize("01", out.partials["01"])[b"s:mean_paid_cents"] == b"250"


# -- end to end ---------------------------------------------------------------------------


def test_a_day_end_to_end_on_embedded_backends(tmp_path: Path, job_pythonpath: str) -> None:
    # Given embedded backends holding one seeded day, and the job known only by its
    # entry point (job_pythonpath: installed, or the metadata pip would write)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    env.update(
        PYTHONPATH=job_pythonpath,
        NIGHTFOLD_DATABASE_URL=f"sqlite:///{tmp_path / 'nightfold.db'}",
        NIGHTFOLD_STORE_URL=f"local://{tmp_path / 'store.sqlite'}",
        NIGHTFOLD_BROKER_URL="db://",
        NIGHTFOLD_CHUNK_ROWS="4000",
        NIGHTFOLD_JOB="hourly_orders",
    )
    rows = 12_000

    def nightfold(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "nightfold", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    for args in (("db", "upgrade"), ("seed", "--day", str(DAY), "--rows", str(rows))):
        assert nightfold(*args).returncode == 0
    # When a master and a worker process run the day
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "nightfold", "worker", "run", "--concurrency", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        master = nightfold("master", "run", "--day", str(DAY))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert master.returncode == 0, master.stderr + (tmp_path / "worker.log").read_text()
    assert "hourly_orders/2026-11-22#1: succeeded" in master.stdout
    # Then verify (a plain one-process recomputation) agrees byte for byte
    verify = nightfold("verify", "--day", str(DAY))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # And every row is either in an hour's counts or quarantined with a reason
    quarantine = nightfold("quarantine", "--day", str(DAY), "--json", "--limit", "100000")
    rejected = json.loads(quarantine.stdout)["rows"]
    store = open_store(env["NIGHTFOLD_STORE_URL"])
    try:
        summary = dict(store.scan(JOB.summary_table, prefix_range(day_token(DAY) + b"|")))
    finally:
        store.close()
    hours = {key.split(b"|")[1].decode() for key in summary}
    assert hours <= {f"{h:02d}" for h in range(24)} and len(hours) >= 20
    counted = sum(int(c[b"s:paid_orders"]) + int(c[b"s:refunds"]) for c in summary.values())
    assert counted + len(rejected) == rows
    assert rejected and {r["reason"] for r in rejected} <= {"bad_ts", "bad_amount", "bad_status"}
