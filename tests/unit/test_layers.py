"""The layering rules of issue 14 that imports can show.

- settings do not import the repository (``RunParams`` is a value object of its own);
- the master's planner and gc call repository functions, never raw ORM statements;
- the transport seam does not depend on the database layer (the ``db://`` consumer
  gets its poll from the caller).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def _imports(path: Path) -> set[str]:
    """Every ``module`` and ``module.name`` a file imports (at any level)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_settings_do_not_import_the_repository() -> None:
    loaded = _loaded_after("nightfold.common.config")
    assert not {m for m in loaded if m.startswith("nightfold.common.db")}


def test_run_params_old_path_is_the_same_class() -> None:
    from nightfold.common.db.runs import RunParams as old
    from nightfold.common.params import RunParams

    assert old is RunParams


@pytest.mark.parametrize("path", ["master/planner.py", "master/gc.py"])
def test_master_planner_and_gc_use_repository_functions(path: str) -> None:
    imports = _imports(ROOT / path)
    raw = {"nightfold.common.db.models", "sqlalchemy.select", "sqlalchemy.update"}
    raw |= {"sqlalchemy.insert", "sqlalchemy.delete", "nightfold.common.db.events.add_event"}
    assert not imports & raw


@pytest.mark.parametrize("path", ["common/transport/__init__.py", "common/transport/dbpoll.py"])
def test_transport_does_not_depend_on_the_database_layer(path: str) -> None:
    imports = _imports(ROOT / path)
    assert not {m for m in imports if m.startswith(("sqlalchemy", "nightfold.common.db"))}
