"""merchant_sketch: exact fields byte-identical however a day is chunked, sketched
fields within their bounds of the exact values, and one real run on nightfold's
embedded backends whose ``verify`` passes, with the job found through its entry point."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from merchant_sketch.job import QUANTILES, SKETCHED, MerchantExact, MerchantSketch, Sketched

from nightfold import MapOutput
from nightfold.ops.verify import compare

JOB = MerchantSketch()
EXACT = MerchantExact()
DAY = "2026-11-22"
Row = tuple[bytes, dict[bytes, bytes]]


@st.composite
def days(draw: st.DrawFn) -> list[Row]:
    """Raw order rows of a few merchants, one of them hot, some rows broken."""
    rows: list[Row] = []
    hot = draw(st.integers(0, 3000))
    for i in range(draw(st.integers(0, 60)) + hot):
        merchant = b"m0" if i < hot else b"m%d" % draw(st.integers(1, 3))
        cols = {
            b"o:customer": b"c%d" % (i if i < hot else draw(st.integers(0, 40))),
            b"o:amount_cents": b"%d"
            % (i * 7919 % 10007 if i < hot else draw(st.integers(0, 10**6))),
            b"o:status": b"paid" if i % 7 else b"refunded",
        }
        if i >= hot and draw(st.integers(0, 9)) == 0:
            cols[draw(st.sampled_from(sorted(cols)))] = draw(st.sampled_from([b"", b"x", b"-1"]))
        rows.append((b"%02d|20261122|%s|o%06d" % (i % 16, merchant, i), cols))
    return rows


def order(customer: bytes, cents: int) -> dict[bytes, bytes]:
    return {b"o:customer": customer, b"o:amount_cents": b"%d" % cents, b"o:status": b"paid"}


def fold(job: object, rows: list[Row]) -> MapOutput[object]:
    out: MapOutput[object] = MapOutput()
    job.map_rows(rows, out)  # type: ignore[attr-defined]
    return out


def chunked(rows: list[Row], data: st.DataObject) -> dict[str, Sketched]:
    """The rows cut into chunks, each folded, encoded and decoded, merged in a shuffled order."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=6)))
    chunks = [fold(JOB, rows[a:b]) for a, b in itertools.pairwise([0, *cuts, len(rows)])]
    pieces = [(g, JOB.encode(p)) for out in chunks for g, p in out.partials.items()]
    random.Random(data.draw(st.integers())).shuffle(pieces)
    merged: dict[str, Sketched] = {}
    for group, blob in pieces:
        p = JOB.decode(blob)
        merged[group] = JOB.merge_into(merged[group], p) if group in merged else p
    return merged


@settings(max_examples=40, deadline=None)
@given(days(), st.data())
def test_exact_fields_are_byte_identical_and_sketched_ones_within_bounds(
    rows: list[Row], data: st.DataObject
) -> None:
    # Given the day folded in one piece, and again in shuffled chunks
    whole = {g: JOB.finalize(g, p) for g, p in fold(JOB, rows).partials.items()}
    pieces = {g: JOB.finalize(g, p) for g, p in chunked(rows, data).items()}
    exact = {g: EXACT.finalize(g, p) for g, p in fold(EXACT, rows).partials.items()}
    for group, cells in pieces.items():
        # Then the exact fields are the same bytes
        for column in (b"s:orders", b"s:revenue_cents"):
            assert cells[column] == whole[group][column]
    # And every sketched field holds the exact value within its bounds (what verify checks)
    assert compare(exact, pieces, SKETCHED) == []
    assert compare(exact, whole, SKETCHED) == []


def test_small_groups_are_exact_and_out_of_bounds_is_reported() -> None:
    rows = [(b"01|20261122|m1|o%d" % i, order(b"c%d" % (i % 3), 100 * i)) for i in range(1, 11)]
    cells = JOB.finalize("m1", fold(JOB, rows).partials["m1"])
    assert cells[b"s:distinct_customers"] == b"3"
    assert json.loads(cells[b"s:distinct_customers_bounds"]) == [3, 3]
    assert cells[b"s:p50_order_cents"] == b"500"  # nearest rank, exact below k values
    assert json.loads(cells[b"s:p95_order_cents_bounds"]) == [1000, 1000]
    assert set(QUANTILES) | {"distinct_customers"} == SKETCHED
    tampered = {**cells, b"s:p50_order_cents_bounds": b"[600,700]"}
    exact = {"m1": EXACT.finalize("m1", fold(EXACT, rows).partials["m1"])}
    [diff] = compare(exact, {"m1": tampered}, SKETCHED)
    assert diff.kind == "out of bounds" and diff.field == b"s:p50_order_cents"


def test_a_hot_merchant_partial_stays_a_few_kb() -> None:
    rows = [(b"01|20261122|m0|o%d" % i, order(b"c%d" % i, i % 5000)) for i in range(50_000)]
    partial = fold(JOB, rows).partials["m0"]
    assert len(JOB.encode(partial)) < 40_000  # hex: ~20 KB of sketches for 50,000 customers
    est = int(JOB.finalize("m0", partial)[b"s:distinct_customers"])
    assert abs(est - 50_000) < 0.05 * 50_000


def test_a_skewed_day_end_to_end_on_embedded_backends(tmp_path: Path, job_pythonpath: str) -> None:
    # Given embedded backends holding a skewed day (one merchant with 60 % of the orders)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    env.update(
        PYTHONPATH=job_pythonpath,
        NIGHTFOLD_DATABASE_URL=f"sqlite:///{tmp_path / 'nightfold.db'}",
        NIGHTFOLD_STORE_URL=f"local://{tmp_path / 'store.sqlite'}",
        NIGHTFOLD_BROKER_URL="db://",
        NIGHTFOLD_CHUNK_ROWS="4000",
        NIGHTFOLD_JOB="merchant_sketch",
    )

    def nightfold(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "nightfold", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)

    seed = (
        "seed",
        "--day",
        DAY,
        "--rows",
        "15000",
        "--hot-share",
        "0.6",
        "--hot-customers",
        "8000",
    )
    for args in (("db", "upgrade"), seed):
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
        master = nightfold("master", "run", "--day", DAY)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert master.returncode == 0, master.stderr + (tmp_path / "worker.log").read_text()
    # Then verify passes: exact fields identical, sketched ones within their bounds
    verify = nightfold("verify", "--day", DAY)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "sketched fields within their bounds" in verify.stdout
