"""``nightfold demo`` (what ``make demo`` runs), end to end on the embedded backends
with a small day: it succeeds, verifies, and its output fits an 80-column terminal."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import nightfold


def test_demo_runs_verifies_and_fits_80_columns(tmp_path: Path) -> None:
    res = nightfold(
        "demo",
        "--rows",
        "20000",
        "--workers",
        "2",
        "--chunk-rows",
        "2000",
        "--dir",
        str(tmp_path / "demo"),
        env={"COLUMNS": "80"},
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "succeeded" in out and "verify: OK" in out, out
    table = out[out.index("top merchants") :].splitlines()[1:12]
    assert all("…" not in line and len(line) <= 80 for line in table), "\n".join(table)


def test_demo_refuses_a_bad_argument(tmp_path: Path) -> None:
    res = nightfold("demo", "--workers", "0", "--dir", str(tmp_path / "demo"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--workers" in res.stderr
