"""``python -m tests.support.chaos``: a session from the command line (``make chaos``);
exit 0 when every trial ended as expected with no row lost or counted twice and no
stale summary cell left by a rerun."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.support import chaos
from tests.support.chaos.plan import KINDS
from tests.support.chaos.session import SessionConfig, run_session
from tests.support.services import REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.chaos", description=chaos.__doc__
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="default: NIGHTFOLD_CHAOS_SEED")
    parser.add_argument("--report", type=Path, default=REPO / "bench" / "results" / "chaos.json")
    parser.add_argument("--logs", type=Path, default=None)
    parser.add_argument("--trial", type=int, default=None, help="replay one trial of --seed")
    parser.add_argument("--lead", choices=KINDS, default=None, help="its lead kind")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated fault kinds (default: all)"
    )
    args = parser.parse_args(argv)
    cfg = SessionConfig(
        trials=args.trials,
        max_trials=args.max_trials,
        seed=args.seed,
        report=args.report,
        logs=args.logs,
        keep_logs=args.keep_logs,
        only_trial=args.trial,
        only_lead=args.lead,
        kinds=tuple(k for k in args.kinds.split(",") if k),
    )
    report = run_session(cfg)
    data = report.data
    good = report.ok and data["rows_lost"] == 0 and data["rows_double_counted"] == 0
    good = good and data["stale_cells"] == 0 and data["stale_rows"] == 0
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
