"""``NIGHTFOLD_TODAY``: the date a relative ``--day today|yesterday`` is resolved
against, so a cron line's plain ``--day yesterday`` can be tried as a given night
would run it (drills, the chaos harness's "next night") without touching the clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from nightfold.cli.options import current_day, parse_day
from nightfold.common.errors import ConfigError
from tests.support.cli import nightfold


def test_without_the_variable_today_is_the_machines() -> None:
    assert current_day({}) == dt.date.today()
    assert current_day({"NIGHTFOLD_TODAY": "  "}) == dt.date.today()


def test_the_variable_states_today(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given NIGHTFOLD_TODAY names a night in the future
    monkeypatch.setenv("NIGHTFOLD_TODAY", "2041-01-03")
    # Then the relative days resolve against it, and absolute days ignore it
    assert parse_day("yesterday") == dt.date(2041, 1, 2)
    assert parse_day("today") == dt.date(2041, 1, 3)
    assert parse_day("2026-11-22") == dt.date(2026, 11, 22)
    # And an explicit today (the callers' own) still wins
    assert parse_day("yesterday", today=dt.date(2026, 1, 1)) == dt.date(2025, 12, 31)


def test_a_bad_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NIGHTFOLD_TODAY"):
        current_day({"NIGHTFOLD_TODAY": "next tuesday"})


def test_a_bad_value_is_one_line_at_the_command_line(tmp_path: Path) -> None:
    res = nightfold(
        "master", "run", "--day", "yesterday", env={"NIGHTFOLD_TODAY": "31/12"}, cwd=tmp_path
    )
    assert res.returncode == 2
    assert "invalid NIGHTFOLD_TODAY='31/12'" in res.stderr
    assert "Traceback" not in res.stderr
