"""A job registered by nothing but a packaging entry point is found by nightfold in a
fresh process: the example package's own pyproject.toml declaration, installed the way
pip installs it (a ``.dist-info`` folder with ``entry_points.txt`` on ``sys.path``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hourly_orders"

PROBE = """
import json
from nightfold.common.jobs import get_job, job_names
from nightfold.common.errors import UnknownJob
try:
    job = get_job("hourly_orders")
except UnknownJob as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"cls": f"{type(job).__module__}.{type(job).__qualname__}",
                      "table": job.summary_table, "names": job_names()}))
"""


def install_metadata(into: Path) -> None:
    """What ``pip install`` writes for the example, minus the files themselves."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = into / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
        for group, entries in project["entry-points"].items()
    )
    (info / "entry_points.txt").write_text(text)


def probe(*paths: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    res = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    result: dict[str, object] = json.loads(res.stdout)
    return result


def test_the_example_declares_its_job_in_the_nightfold_jobs_group() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["nightfold.jobs"] == {
        "hourly_orders": "hourly_orders.job:HourlyOrders"
    }


def test_an_installed_entry_point_registers_the_job(tmp_path: Path) -> None:
    # Given the example's sources and its installed metadata on the path
    install_metadata(tmp_path)
    # When a fresh process asks nightfold for the job by name
    found = probe(tmp_path, EXAMPLE)
    # Then it is the example's class, loaded through the entry point
    assert found["cls"] == "hourly_orders.job.HourlyOrders"
    assert found["table"] == "hourly_orders_summary"
    assert found["names"] == ["hourly_orders", "merchant_daily"]


@pytest.mark.parametrize("with_sources", [True, False], ids=["no metadata", "no sources"])
def test_without_the_entry_point_or_the_code_there_is_no_job(
    tmp_path: Path, with_sources: bool
) -> None:
    """Importable code alone registers nothing (no import side effects are relied on);
    metadata whose module is missing fails only when that job is asked for."""
    if with_sources:
        found = probe(EXAMPLE)
        assert "unknown job 'hourly_orders'" in str(found["error"])
        return
    install_metadata(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTFOLD_")}
    env["PYTHONPATH"] = str(tmp_path)
    res = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode != 0
    assert "hourly_orders" in res.stderr and "failed to load" in res.stderr
