"""8. Planning that does not read the day: plan time on a 4x bigger day, same layout.

Two days in two raw tables pre-split the same way (``REGIONS`` regions: the salt
buckets, then inside the day), ``ROWS`` and ``4 x ROWS`` rows. Each is planned,
interleaved small/big, in two ways:

- **first night**: no earlier run in the database, so region listing plus bounded
  probes of every piece;
- **guideposts**: the database holds a succeeded run of the day before whose map
  chunks are the day's exact 50k-row cut points moved a day back (what a night
  leaves when its chunks came out at ``chunk_rows``), so region listing only.

Planning is timed in this process step by step, with the planner's own functions
(region listing, guideposts from MariaDB, probes on ``SCAN_THREADS``
connections, the pure split, recording the plan in MariaDB): their sum is what
``compute_plan`` + ``record_plan`` cost the master. The store calls go through a
counting wrapper (``tests/support/counting.py``), which gives the per-probe and
per-region costs; from them, an estimate for a 1B-row day on 256 regions.

The plan's quality is measured against a sketch of each day (every 1,000th key
with its rank, one keys-only scan, cached): the estimate against the true count,
and the chunks' true sizes.

    python -m bench.plan                        # 2M and 8M rows (seeded once, cached)
    NIGHTFOLD_BENCH_PLAN_ROWS=200000 python -m bench.plan   # quick: 200k and 800k rows
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import statistics
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

from bench.common import (
    DAY,
    DEFAULT_CHUNK_ROWS,
    PREFIX,
    REGIONS,
    ROWS,
    SALT_BUCKETS,
    WORK,
    ensure_seeded,
    fresh_mariadb,
    log,
    median,
    store_url,
    write_result,
)

SMALL = int(os.environ.get("NIGHTFOLD_BENCH_PLAN_ROWS", str(ROWS)))
"""Rows of the small day (the big one has 4x); the default is the bench day itself."""
REPS = int(os.environ.get("NIGHTFOLD_BENCH_PLAN_REPS", "5"))
GUIDED_TRIES = 5
SKETCH_EVERY = 1000
TARGET_RATIO = 1.5
BIG_DAY_ROWS = 1_000_000_000
BIG_DAY_REGIONS = 256


def _prefix(rows: int) -> str:
    if rows == ROWS:
        return PREFIX
    if rows == 4 * ROWS:
        return f"{PREFIX}x4"
    return f"{PREFIX}r{rows}"


# -- the sketch of a day -------------------------------------------------------------------


def sketch(url: str, rows: int) -> dict[str, Any]:
    """Every ``SKETCH_EVERY``-th key of each of the day's ranges, with its rank in the
    range, and each range's count: one keys-only scan, cached next to the seed marker."""
    from nightfold.common.keys import day_ranges
    from nightfold.common.store import open_store

    path = WORK / f"sketch-{_prefix(rows)}-{DAY:%Y%m%d}-{rows}-{REGIONS}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    store = open_store(url)
    started = time.monotonic()
    ranges: list[dict[str, Any]] = []
    try:
        for r in day_ranges(DAY, SALT_BUCKETS):
            keys: list[str] = []
            n = 0
            for key, _ in store.scan("nightfold_raw", r, keys_only=True, batch_size=5000):
                if n % SKETCH_EVERY == 0:
                    keys.append(base64.b64encode(key).decode())
                n += 1
            ranges.append({"keys": keys, "count": n})
    finally:
        store.close()
    doc = {"rows": rows, "ranges": ranges, "scan_s": round(time.monotonic() - started, 1)}
    log(f"plan: sketched {rows:,} rows in {doc['scan_s']} s")
    path.write_text(json.dumps(doc))
    return doc


class Ranks:
    """How many rows of the day lie before a key (within ``SKETCH_EVERY``)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        from nightfold.common.keys import day_ranges

        self.ranges = day_ranges(DAY, SALT_BUCKETS)
        self.keys = [[base64.b64decode(k) for k in r["keys"]] for r in doc["ranges"]]
        self.counts = [int(r["count"]) for r in doc["ranges"]]
        self.before = [0, *list(_accumulate(self.counts))]

    def rank(self, key: bytes) -> float:
        """Rows of the day before ``key``: a key between sketch keys ``j - 1`` and ``j``
        has between ``(j - 1) x 1000`` and ``j x 1000`` rows before it (midpoint taken)."""
        for i, r in enumerate(self.ranges):
            if key <= r.start:
                return float(self.before[i])
            if key in r:
                j = bisect_left(self.keys[i], key)
                inside = 0 if j == 0 else min(j * SKETCH_EVERY - SKETCH_EVERY / 2, self.counts[i])
                return self.before[i] + inside
        return float(self.before[-1])

    def size(self, start: bytes, end: bytes) -> float:
        return self.rank(end) - self.rank(start)

    def guidepost_chunks(self, every_rows: int) -> list[tuple[bytes, bytes, int]]:
        """The day cut every ``every_rows`` rows (sketch keys), ``(start, end, rows)``."""
        step = max(1, every_rows // SKETCH_EVERY)
        out: list[tuple[bytes, bytes, int]] = []
        for r, keys, count in zip(self.ranges, self.keys, self.counts, strict=True):
            cuts = [
                (r.start, 0),
                *((keys[j], j * SKETCH_EVERY) for j in range(step, len(keys), step)),
            ]
            cuts.append((r.end, count))
            out += [(a, b, rb - ra) for (a, ra), (b, rb) in pairwise(cuts)]
        return out


def _accumulate(xs: Sequence[int]) -> list[int]:
    total, out = 0, []
    for x in xs:
        total += x
        out.append(total)
    return out


# -- one timed plan ------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def plan_once(url: str, engine: Any, generation: int) -> dict[str, Any]:
    """compute_plan + record_plan, step by step and timed, on a counted store."""
    from nightfold.common.db import runs as run_repo
    from nightfold.common.db.chunks import ChunkSpec
    from nightfold.common.jobs import get_job, shards
    from nightfold.common.keys import day_ranges, partial_prefix, prefix_range
    from nightfold.common.states import Stage
    from nightfold.common.store import open_store
    from nightfold.master.planner import (
        HOT_CHUNKS,
        MAX_MAP_CHUNKS,
        Plan,
        load_guideposts,
        record_plan,
        sample_pieces,
    )
    from nightfold.master.splitter import (
        covered,
        estimate_rows,
        pieces,
        plan_chunks,
        sample_weights,
    )
    from tests.support.counting import CountingStore, Tally, counting_opener

    job = get_job("merchant_daily")
    params = run_repo.RunParams(salt_buckets=SALT_BUCKETS)
    with engine.begin() as conn:
        run = run_repo.create_run(conn, job.name, DAY, generation, params, "bench")
    assert run is not None
    tally = Tally()
    store = CountingStore(open_store(url), tally)
    try:
        started = time.perf_counter()
        ranges = day_ranges(DAY, SALT_BUCKETS)
        regions, t_regions = _timed(lambda: store.region_starts(job.raw_table))
        (guideposts, lender), t_guideposts = _timed(lambda: load_guideposts(engine, run))
        all_pieces = pieces(ranges, regions)
        todo = [p for p in all_pieces if not covered(p, guideposts)]
        probed = all_pieces if job.sharded else todo  # as plan_map(sample_all=job.sharded)
        samples, t_probes = _timed(
            lambda: sample_pieces(
                store, job.raw_table, probed, counting_opener(lambda: open_store(url), tally)
            )
        )
        uncovered = {p: samples[p] for p in todo}
        chunks, t_split = _timed(
            lambda: plan_chunks(
                ranges, regions, guideposts, uncovered, params.chunk_rows, MAX_MAP_CHUNKS
            )
        )
        hot, t_hot = _timed(
            lambda: shards.hot_groups(
                job,
                sample_weights(samples, chunks),
                params.chunk_rows * HOT_CHUNKS,
            )
        )
        specs = [ChunkSpec(Stage.MAP, i, c.range) for i, c in enumerate(chunks)]
        specs += [
            ChunkSpec(Stage.REDUCE, b, prefix_range(partial_prefix(job.name, DAY, generation, b)))
            for b in range(params.reduce_buckets)
        ]
        plan = Plan(specs, estimate_rows(chunks))

        def record() -> None:
            with engine.begin() as conn:
                assert record_plan(conn, run, plan, "bench")

        _, t_record = _timed(record)
        wall = time.perf_counter() - started
    finally:
        store.close()
    return {
        "plan_s": wall,
        "regions_s": t_regions,
        "guideposts_s": t_guideposts,
        "probes_s": t_probes,
        "split_s": t_split,
        "hot_s": t_hot,
        "hot_groups": None if hot is None else len(hot),
        "record_s": t_record,
        "regions": len(regions) + 1,
        "pieces": len(all_pieces),
        "pieces_probed": len(probed),
        "guideposts": len(guideposts),
        "lender": lender,
        "probe_calls": tally.calls["probe_keys"],
        "keys_read": tally.keys_read(),
        "scans": tally.calls["scan"],
        "probe_call_s": list(tally.per_call.get("probe_keys", [])),
        "map_chunks": len(chunks),
        "rows_estimate": estimate_rows(chunks),
        "chunks": [(c.range.start, c.range.end) for c in chunks],
    }


def record_earlier_night(engine: Any, chunks: list[tuple[bytes, bytes, int]]) -> int:
    """A succeeded run of the day before whose done map chunks are ``chunks`` moved back."""
    from sqlalchemy import update

    from nightfold.common.db import runs as run_repo
    from nightfold.common.db.chunks import ChunkSpec
    from nightfold.common.db.models import Chunk, Run
    from nightfold.common.db.plans import record_plan
    from nightfold.common.keys import KeyRange, move_day
    from nightfold.common.states import RunState, Stage

    before = DAY - dt.timedelta(days=1)
    params = run_repo.RunParams(salt_buckets=SALT_BUCKETS)
    moved = [(move_day(a, DAY, before), move_day(b, DAY, before), n) for a, b, n in chunks]
    specs = [
        ChunkSpec(Stage.MAP, i, KeyRange(a, b))
        for i, (a, b, _) in enumerate(moved)
        if a is not None and b is not None
    ]
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", before, 1, params, "bench")
        assert run is not None
        assert record_plan(conn, run.id, specs, "bench")
        for spec, (_, _, n) in zip(specs, moved, strict=True):
            conn.execute(
                update(Chunk)
                .where(Chunk.run_id == run.id, Chunk.idx == spec.idx, Chunk.stage == "map")
                .values(state="done", rows_read=n)
            )
        conn.execute(update(Run).where(Run.id == run.id).values(state=RunState.SUCCEEDED))
    return len(specs)


def quality(result: dict[str, Any], ranks: Ranks, rows: int) -> dict[str, Any]:
    sizes = sorted(ranks.size(a, b) for a, b in result.pop("chunks"))
    return {
        "rows_estimate": result["rows_estimate"],
        "estimate_over_true": round(result["rows_estimate"] / rows, 3),
        "chunk_rows_median": round(statistics.median(sizes)),
        "chunk_rows_p90": round(sizes[int(0.9 * (len(sizes) - 1))]),
        "chunk_rows_max": round(sizes[-1]),
        "chunks_over_2x_target": sum(1 for s in sizes if s > 2 * DEFAULT_CHUNK_ROWS),
    }


# -- a 1B-row day's plan, without its rows -------------------------------------------------


def synthetic_night(
    chunks: int, regions: int
) -> tuple[list[tuple[bytes, bytes, int]], list[bytes]]:
    """An earlier night of ``chunks`` chunks of 50k rows over the day's ranges, and
    ``regions`` region starts inside the day (the salt buckets first): the shape of a
    1B-row day's guideposts, made up (no row is needed to plan with them)."""
    from nightfold.common.keys import day_ranges, raw_key

    ranges = day_ranges(DAY, SALT_BUCKETS)
    per_salt = chunks // SALT_BUCKETS
    night: list[tuple[bytes, bytes, int]] = []
    for salt, r in enumerate(ranges):
        cuts = [
            raw_key(salt, DAY, f"m{i * 1000 // per_salt:06d}", f"o{i:010d}")
            for i in range(1, per_salt)
        ]
        bounds = [r.start, *cuts, r.end]
        night += [(a, b, DEFAULT_CHUNK_ROWS) for a, b in pairwise(bounds)]
    inside = max(0, regions - SALT_BUCKETS) // SALT_BUCKETS
    starts = [r.start[:3] for r in ranges[1:]]
    for salt in range(SALT_BUCKETS):
        starts += [
            raw_key(salt, DAY, f"m{(q * 1000) // (inside + 1):06d}", "")
            for q in range(1, inside + 1)
        ]
    return night, sorted(starts)


def measure_scale(engine: Any, chunks: int, regions: int) -> dict[str, Any]:
    """The parts of a plan that grow with the chunk count, at a 1B-row day's size:
    loading ``chunks`` guideposts from MariaDB, the pure split, recording the plan."""
    from nightfold.common.db import runs as run_repo
    from nightfold.common.db.chunks import ChunkSpec
    from nightfold.common.keys import day_ranges
    from nightfold.common.states import Stage
    from nightfold.master.planner import MAX_MAP_CHUNKS, Plan, load_guideposts, record_plan
    from nightfold.master.splitter import plan_chunks

    night, starts = synthetic_night(chunks, regions)
    record_earlier_night(engine, night)
    params = run_repo.RunParams(salt_buckets=SALT_BUCKETS)
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", DAY, 1, params, "bench")
    assert run is not None
    (guideposts, _), t_load = _timed(lambda: load_guideposts(engine, run))
    planned, t_split = _timed(
        lambda: plan_chunks(
            day_ranges(DAY, SALT_BUCKETS),
            starts,
            guideposts,
            {},
            DEFAULT_CHUNK_ROWS,
            MAX_MAP_CHUNKS,
        )
    )
    plan = Plan([ChunkSpec(Stage.MAP, i, c.range) for i, c in enumerate(planned)], 0)

    def record() -> None:
        with engine.begin() as conn:
            assert record_plan(conn, run, plan, "bench")

    _, t_record = _timed(record)
    return {
        "guideposts": len(guideposts),
        "regions": len(starts) + 1,
        "map_chunks": len(planned),
        "load_guideposts_s": round(t_load, 3),
        "split_s": round(t_split, 3),
        "record_s": round(t_record, 3),
    }


# -- the benchmark -------------------------------------------------------------------------


def run(reps: int = REPS) -> dict[str, Any]:
    from nightfold.common.db.engine import make_engine

    days = {"small": SMALL, "big": 4 * SMALL}
    urls = {name: store_url(_prefix(rows)) for name, rows in days.items()}
    seeds = {name: ensure_seeded(urls[name], rows=rows) for name, rows in days.items()}
    ranks = {name: Ranks(sketch(urls[name], rows)) for name, rows in days.items()}
    runs: dict[str, list[dict[str, Any]]] = {}
    quality_of: dict[str, dict[str, Any]] = {}
    with (
        fresh_mariadb("p") as empty_url,
        fresh_mariadb("p") as small_url,
        fresh_mariadb("p") as big_url,
        fresh_mariadb("p") as scale_url,
    ):
        engines = {
            "first": make_engine(empty_url),
            "small": make_engine(small_url),
            "big": make_engine(big_url),
        }
        try:
            for name in days:
                n = record_earlier_night(
                    engines[name], ranks[name].guidepost_chunks(DEFAULT_CHUNK_ROWS)
                )
                log(f"plan: the {name} day's earlier night: {n} chunks")
            generation = 0
            for rep in range(reps):
                order = list(days) if rep % 2 == 0 else list(reversed(days))
                for name in order:
                    for mode in ("first", "guideposts"):
                        engine = engines["first" if mode == "first" else name]
                        # a guidepost plan takes ~0.1 s: the median of a few, against noise
                        tries = []
                        for _ in range(1 if mode == "first" else GUIDED_TRIES):
                            generation += 1
                            tries.append(plan_once(urls[name], engine, generation))
                        r = sorted(tries, key=lambda t: t["plan_s"])[len(tries) // 2]
                        key = f"{name}_{mode}"
                        if key not in quality_of:
                            quality_of[key] = quality(r, ranks[name], days[name])
                        else:
                            r.pop("chunks")
                        runs.setdefault(key, []).append(r)
                        log(
                            f"plan rep {rep} {key}: {r['plan_s']:.3f} s, {r['map_chunks']} "
                            f"chunks, {r['probe_calls']} probes, {r['keys_read']} keys"
                        )
        finally:
            for engine in engines.values():
                engine.dispose()
        scale_engine = make_engine(scale_url)
        try:
            scale = measure_scale(scale_engine, BIG_DAY_ROWS // DEFAULT_CHUNK_ROWS, BIG_DAY_REGIONS)
            log(f"plan: a 1B-row day's guideposts and plan, without its rows: {scale}")
        finally:
            scale_engine.dispose()

    def med(key: str, field: str) -> float:
        return median([r[field] for r in runs[key]])

    def growth(mode: str) -> float:
        return median(
            [
                b["plan_s"] / s["plan_s"]
                for s, b in zip(runs[f"small_{mode}"], runs[f"big_{mode}"], strict=True)
            ]
        )

    probe_calls = [s for key in runs for r in runs[key] for s in r.pop("probe_call_s")]
    per_probe = median(probe_calls) if probe_calls else float("nan")
    regions = runs["small_first"][0]["regions"]
    per_region = median([r["regions_s"] for key in runs for r in runs[key]]) / regions
    probes_per_piece = med("big_first", "probe_calls") / runs["big_first"][0]["pieces"]
    split_per_piece = med("big_first", "split_s") / runs["big_first"][0]["pieces"]
    from nightfold.master.planner import SCAN_THREADS

    listing_1b = per_region * BIG_DAY_REGIONS
    probing_1b = BIG_DAY_REGIONS * probes_per_piece * per_probe / SCAN_THREADS
    # A first night records a chunk a piece at least and at most MAX_MAP_CHUNKS: the
    # upper bound takes the measured 20,000-chunk record.
    first_1b = listing_1b + probing_1b + split_per_piece * BIG_DAY_REGIONS + scale["record_s"]
    guided_1b = listing_1b + scale["load_guideposts_s"] + scale["split_s"] + scale["record_s"]
    # a sharded job (merchant_daily) probes every piece on guidepost nights too (hot groups)
    guided_sharded_1b = guided_1b + probing_1b
    ratio_first, ratio_guided = growth("first"), growth("guideposts")
    result = {
        "rows_small": days["small"],
        "rows_big": days["big"],
        "regions": regions,
        "reps": reps,
        "seed": seeds,
        "plan_growth_ratio": round(max(ratio_first, ratio_guided), 3),
        "plan_growth_ratio_first_night": round(ratio_first, 3),
        "plan_growth_ratio_guideposts": round(ratio_guided, 3),
        "target": f"<= {TARGET_RATIO}",
        "met": max(ratio_first, ratio_guided) <= TARGET_RATIO,
        "plan_s": {key: round(med(key, "plan_s"), 4) for key in runs},
        "steps_s": {
            key: {
                step: round(med(key, f"{step}_s"), 4)
                for step in ("regions", "guideposts", "probes", "split", "hot", "record")
            }
            for key in runs
        },
        "store_work": {
            key: {
                "region_listings": 1,
                "probe_calls": runs[key][0]["probe_calls"],
                "keys_read": runs[key][0]["keys_read"],
                "scans": runs[key][0]["scans"],
                "pieces": runs[key][0]["pieces"],
                "pieces_probed": runs[key][0]["pieces_probed"],
                "map_chunks": runs[key][0]["map_chunks"],
            }
            for key in runs
        },
        "quality": quality_of,
        "per_probe_s": round(per_probe, 5),
        "per_region_s": round(per_region, 6),
        "probes_per_piece": round(probes_per_piece, 2),
        "split_per_probed_piece_s": round(split_per_piece, 5),
        "scale_1b_measured": scale,
        "estimate_1b_rows_256_regions": {
            "map_chunks": scale["map_chunks"],
            "region_listing_s": round(listing_1b, 2),
            "probing_s": round(probing_1b, 2),
            "first_night_plan_s": round(first_1b, 1),
            "guideposts_plan_s": round(guided_1b, 1),
            "guideposts_sharded_job_plan_s": round(guided_sharded_1b, 1),
            "formula": (
                "first night: 256 x per_region_s + 256 x probes_per_piece x per_probe_s / "
                "SCAN_THREADS + 256 x split_per_probed_piece_s + record of 20,000 chunks; "
                "guideposts: 256 x per_region_s + load, split and record of 20,000 chunks "
                "(a sharded job: plus the first night's probing) "
                "(scale_1b_measured: MariaDB and the pure split at that size, made-up keys)"
            ),
        },
        "runs": runs,
    }
    write_result("plan", result)
    log(
        f"plan: growth {ratio_first:.2f}x (first night), {ratio_guided:.2f}x (guideposts); "
        f"per probe {per_probe * 1000:.2f} ms, per region {per_region * 1000:.3f} ms"
    )
    return result


if __name__ == "__main__":
    run()
