"""The nightly kick-off: the cron line (flock, no overlap), nightfold-nightly's
resume-after-crash loop (run for real with a stand-in master), and the systemd
units (`systemd-analyze verify` where systemd is installed)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nightfold.common.config import Settings
from nightfold.common.errors import RET_CONFIG, RET_RUN_FAILED, RET_SCHEMA
from tests.deploy.deployfiles import (
    CRON_FILE,
    NIGHTLY_SCRIPT,
    SYSTEMD,
    read_cron,
    read_unit,
)

FAKE_MASTER = """#!/usr/bin/env bash
# Stand-in for `nightfold master` / `docker compose run --rm master`: records its
# arguments, exits with the next code of $CODES_FILE (0 when none is left).
printf '%s\\n' "$*" >>"$CALLS_FILE"
code=$(head -n1 "$CODES_FILE" 2>/dev/null)
sed -i 1d "$CODES_FILE" 2>/dev/null
exit "${code:-0}"
"""


def fake_master(tmp_path: Path, codes: list[int]) -> dict[str, str]:
    exe = tmp_path / "fake-master"
    exe.write_text(FAKE_MASTER)
    exe.chmod(0o755)
    (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
    return {
        **os.environ,
        "CODES_FILE": str(tmp_path / "codes"),
        "CALLS_FILE": str(tmp_path / "calls"),
        "NIGHTFOLD_MASTER_CMD": f"{exe} with words",
        "NIGHTFOLD_RETRY_DELAY": "0",
    }


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def nightly(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NIGHTLY_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_crashed_master_is_resumed_for_the_same_day(tmp_path: Path) -> None:
    env = fake_master(tmp_path, [137, 5, 3, 0])  # killed, conflict, service down, ok
    res = nightly(env, "2026-11-22")
    assert res.returncode == 0, res.stderr
    assert calls(tmp_path) == ["with words run --day 2026-11-22"] * 4


def test_day_defaults_to_yesterday_computed_once(tmp_path: Path) -> None:
    env = fake_master(tmp_path, [1, 0])
    before = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    res = nightly(env)
    after = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    assert res.returncode == 0, res.stderr
    days = {line.split()[-1] for line in calls(tmp_path)}
    assert len(days) == 1 and days <= {before, after}
    # and, being the nightly case, it also resumes stranded earlier days
    assert all("run --resume-earlier --day" in line for line in calls(tmp_path))


@pytest.mark.parametrize("code", [RET_CONFIG, RET_SCHEMA, RET_RUN_FAILED])
def test_final_exit_codes_are_not_retried(tmp_path: Path, code: int) -> None:
    res = nightly(fake_master(tmp_path, [code, 0]), "2026-11-22")
    assert res.returncode == code
    assert len(calls(tmp_path)) == 1


def test_attempts_are_bounded(tmp_path: Path) -> None:
    env = {**fake_master(tmp_path, [3] * 10), "NIGHTFOLD_ATTEMPTS": "3"}
    res = nightly(env, "2026-11-22")
    assert res.returncode == 3
    assert len(calls(tmp_path)) == 3
    assert "giving up" in res.stderr


def _cron_command(tmp_path: Path, wait: int | None = None) -> tuple[str, dict[str, str]]:
    """The cron.d job line's command, pointed at this checkout and a temp lock/log."""
    env_vars, jobs = read_cron(CRON_FILE)
    (job,) = [j for j in jobs if not j.commented]
    command = job.command
    assert command.startswith("flock "), "the job runs under flock"
    for old, new in (
        ("/opt/nightfold/deploy/cron/nightfold-nightly", str(NIGHTLY_SCRIPT)),
        ("/run/lock/nightfold-master.lock", str(tmp_path / "lock")),
        ("/var/log/nightfold/master.log", str(tmp_path / "log")),
    ):
        assert old in command, old
        command = command.replace(old, new)
    if wait is not None:
        command = command.replace("-w 21600", f"-w {wait}")
    env = {**fake_master(tmp_path, [0]), "SHELL": env_vars["SHELL"]}
    return command, env


def test_cron_job_line_runs_the_nightly_master(tmp_path: Path) -> None:
    command, env = _cron_command(tmp_path)
    res = subprocess.run([env["SHELL"], "-c", command], env=env, timeout=60)
    assert res.returncode == 0, (tmp_path / "log").read_text()
    (call,) = calls(tmp_path)
    assert call.startswith("with words run --resume-earlier --day ")
    assert "succeeded" in (tmp_path / "log").read_text()


def test_cron_job_waits_for_the_previous_night(tmp_path: Path) -> None:
    """Two nights never overlap: while the lock is held the job does not start."""
    command, env = _cron_command(tmp_path, wait=1)
    holder = subprocess.Popen(["flock", str(tmp_path / "lock"), "sleep", "10"])
    try:
        deadline = time.monotonic() + 5
        while subprocess.run(["flock", "-n", str(tmp_path / "lock"), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "the holder did not take the lock"
            time.sleep(0.05)
        res = subprocess.run([env["SHELL"], "-c", command], env=env, timeout=60)
    finally:
        holder.terminate()
        holder.wait()
    assert res.returncode != 0
    assert calls(tmp_path) == []


def test_cron_schedule_and_user() -> None:
    _, jobs = read_cron(CRON_FILE)
    (job,) = [j for j in jobs if not j.commented]
    assert job.user == "nightfold"
    assert job.schedule[2:] == ["*", "*", "*"], "every night"


def test_flock_options_exist_here() -> None:
    if shutil.which("flock") is None:
        pytest.skip("flock (util-linux) is not installed")
    res = subprocess.run(["flock", "--help"], capture_output=True, text=True)
    for option in ("--verbose", "-w"):
        assert option in res.stdout, option


def test_master_service_restarts_on_failure() -> None:
    unit = read_unit(SYSTEMD / "nightfold-master.service")
    service = unit["Service"]
    assert service["Type"] == ["oneshot"], "a oneshot cannot run twice at once"
    assert service["Restart"] == ["on-failure"]
    assert set(service["RestartPreventExitStatus"][0].split()) == {"2", "4", "6"}
    assert float(service["RestartSec"][0]) > Settings().master_stale_seconds
    timer = read_unit(SYSTEMD / "nightfold-master.timer")
    assert timer["Timer"]["Unit"] == ["nightfold-master.service"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    assert timer["Timer"]["OnCalendar"]


def test_worker_service_stops_within_the_grace() -> None:
    service = read_unit(SYSTEMD / "nightfold-worker@.service")["Service"]
    env = dict(v.split("=", 1) for v in service["Environment"])
    grace = float(env["NIGHTFOLD_SHUTDOWN_GRACE_SECONDS"])
    assert grace == Settings().shutdown_grace_seconds
    stop = float(service["TimeoutStopSec"][0])
    assert grace + 10 <= stop <= grace + 60
    assert service["KillSignal"] == ["SIGTERM"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own parser: unknown keys, bad values and forbidden combinations
    (e.g. Restart=always on a oneshot) are reported. ExecStart paths are pointed at
    /bin/true because /opt/nightfold does not exist here."""
    names = []
    for unit in sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.timer")):
        text = unit.read_text().replace("/opt/nightfold/venv/bin/nightfold", "/bin/true")
        name = unit.name.replace("@.service", "@1.service")  # verify needs an instance
        (tmp_path / name).write_text(text)
        names.append(f"./{name}")
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
