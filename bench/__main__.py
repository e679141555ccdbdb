"""Run every benchmark, then the report: ``python -m bench`` (``make bench``).

    python -m bench                      # everything, in order
    python -m bench overhead recovery    # some of them (and the report)
    python -m bench fleet --quick        # quick mode (NIGHTFOLD_BENCH_QUICK=1): shorter
                                         # windows, smaller plans, for development

Each benchmark writes ``bench/results/<name>.json``; a failing one is recorded
and the others still run (the exit code is then 1). The total wall time goes to
``bench/results/run_all.json`` and into the summary.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback

from bench.common import ensure_seeded, log, write_result

ORDER = (
    "overhead",
    "plan",
    "scaling",
    "coordinator",
    "statements",
    "fleet",
    "recovery",
    "worker_kill",
    "celery_compare",
    "memory",
    "skew",
    "resume",
    "profile",
    "console",
    "hot",
)


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(ORDER)}")
        return 0
    if "--quick" in argv:
        os.environ["NIGHTFOLD_BENCH_QUICK"] = "1"
        argv = [a for a in argv if a != "--quick"]
    chosen = [a for a in argv if a in ORDER] or list(ORDER)
    unknown = [a for a in argv if a not in ORDER]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(ORDER)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    load = round(os.getloadavg()[0], 2)
    timings: dict[str, float] = {}
    failures: dict[str, str] = {}
    t0 = time.monotonic()
    seed = ensure_seeded()
    timings["seed"] = round(time.monotonic() - t0, 1)
    for name in chosen:
        log(f"=== {name}")
        t0 = time.monotonic()
        for attempt in (1, 2):  # once more if it failed: the services are shared (restarts)
            try:
                importlib.import_module(f"bench.{name}").run()
                failures.pop(name, None)
                break
            except Exception as exc:
                failures[name] = f"attempt {attempt}: {type(exc).__name__}: {exc}"
                traceback.print_exc()
                time.sleep(10)
        timings[name] = round(time.monotonic() - t0, 1)
        log(f"=== {name}: {timings[name]:.0f} s")
    wall = time.monotonic() - started
    write_result(
        "run_all",
        {
            "wall_s": round(wall, 1),
            "benchmarks": chosen,
            "seconds": timings,
            "seed": seed,
            "failures": failures,
            "loadavg_start": load,
            "loadavg_end": round(os.getloadavg()[0], 2),
        },
    )
    from bench import report

    report.run()
    log(f"all benchmarks: {wall / 60:.1f} min" + (f"; FAILED: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
