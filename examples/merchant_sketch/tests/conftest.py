"""Make the example importable and its entry point visible when it is not installed.

Installed (``pip install -e examples/merchant_sketch``), this does nothing. In
nightfold's own checkout, where ``make test`` runs these tests without
installing the example, it puts the package on ``sys.path`` and writes what pip
would have written -- a ``.dist-info`` folder with the ``entry_points.txt`` of
``pyproject.toml`` -- so that nightfold finds the job by its entry point exactly
as after ``pip install``, in this process and in the processes the tests start.
"""

from __future__ import annotations

import os
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]


def _installed() -> bool:
    return any(ep.name == "merchant_sketch" for ep in metadata.entry_points(group="nightfold.jobs"))


if not _installed() and str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))  # test modules import merchant_sketch at collection


def write_dist_info(into: Path) -> Path:
    """A minimal installed-distribution record of this project in ``into``."""
    name, version = PYPROJECT["name"], PYPROJECT["version"]
    info = into / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in PYPROJECT["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return info


@pytest.fixture(scope="session")
def job_pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH under which processes started by a test find ``merchant_sketch``
    and its entry point."""
    outer = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _installed():
        return os.pathsep.join(outer)
    site = tmp_path_factory.mktemp("site")
    write_dist_info(site)
    return os.pathsep.join([str(site), str(EXAMPLE), *outer])
