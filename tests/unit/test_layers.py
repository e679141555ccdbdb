"""The layering rules of issue 14 that imports can show.

- no module under ``common/`` serves only the CLI, bench or tests; ``common/``
  imports nothing of the CLI, ``nightfold.ops``, the built-in jobs, master or worker;
  the registry loads a built-in job only when it is asked for;
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


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["nightfold", *parts])


def _common_modules() -> dict[str, Path]:
    return {_module_of(p): p for p in sorted((ROOT / "common").rglob("*.py"))}


# Loaded by URL or by the composition root on behalf of master and worker, not by a
# static import from master/ or worker/: still kernel, each for the reason given.
RUNTIME_LOADED = {
    "nightfold.common.store.hbase": "the hbase:// store backend, opened by URL",
    "nightfold.common.store.local": "the local:// store backend, opened by URL",
    "nightfold.common.transport.rabbitmq": "the amqp:// transport backend, opened by URL",
    "nightfold.common.transport.dbpoll": "the db:// transport backend, opened by URL",
    "nightfold.common.db.poll": "the db:// consumer's poll, handed to the worker's consumer",
    "nightfold.common.db.migrate": "the schema check every master and worker runs at start",
}


def test_every_common_module_serves_master_or_worker() -> None:
    # Given the modules master/ and worker/ import, followed through common/
    modules = _common_modules()
    seen: set[str] = set()
    todo = [p for d in ("master", "worker") for p in (ROOT / d).rglob("*.py")]
    while todo:
        for name in _imports(todo.pop()):
            for candidate in (name, name.rpartition(".")[0]):
                if candidate in modules and candidate not in seen:
                    seen.add(candidate)
                    todo.append(modules[candidate])
    # Then no module under common/ is there only for the CLI, bench or tests
    assert set(modules) - seen - set(RUNTIME_LOADED) <= {"nightfold.common"}


def test_common_imports_nothing_of_the_cli_ops_or_builtin_jobs() -> None:
    for path in (ROOT / "common").rglob("*.py"):
        outside = {m for m in _imports(path) if m.startswith(("nightfold.cli", "nightfold.ops"))}
        outside |= {
            m for m in _imports(path) if m.startswith(("nightfold.jobs", "nightfold.master"))
        }
        outside |= {m for m in _imports(path) if m.startswith("nightfold.worker")}
        assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"


def test_the_registry_loads_the_builtin_job_only_when_asked() -> None:
    loaded = _loaded_after("nightfold.common.jobs")
    assert not {m for m in loaded if m.endswith(".merchant_daily")}
