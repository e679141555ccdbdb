"""The public API: what ``from nightfold import ...`` offers users (docs/jobs.md).

The list is exact on purpose: adding a public name is a decision (it is then
supported), removing or renaming one breaks users' packages.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import nightfold
from nightfold.common import errors, jobs

PUBLIC = {
    "Job": jobs,
    "MapOutput": jobs,
    "register": jobs,
    "NightfoldError": errors,
    "ConfigError": errors,
    "UnknownJob": errors,
    "ServiceUnavailable": errors,
    "AccessRefused": errors,
    "StoreRejected": errors,
    "CellTooLarge": errors,
    "CorruptPartial": errors,
    "IllegalTransition": errors,
    "SchemaOutOfDate": errors,
    "RunConflict": errors,
    "RunFailed": errors,
    "ChunkLost": errors,
    "MalformedMessage": errors,
    "VerifyMismatch": errors,
}
"""Every public name -> its home module (the old import path, which keeps working)."""


def test_all_is_exactly_the_public_names() -> None:
    assert sorted(nightfold.__all__) == sorted([*PUBLIC, "__version__"])


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_name_is_its_home_modules_object(name: str) -> None:
    assert getattr(nightfold, name) is getattr(PUBLIC[name], name)
    namespace: dict[str, object] = {}
    exec(f"from nightfold import {name}", namespace)  # the way users write it
    assert namespace[name] is getattr(PUBLIC[name], name)


def test_every_error_derives_from_the_root() -> None:
    for name, home in PUBLIC.items():
        value = getattr(home, name)
        if home is errors:
            assert issubclass(value, nightfold.NightfoldError)
    # every error class of the tree is public
    tree = {
        n
        for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, errors.NightfoldError)
    }
    assert tree == {n for n, home in PUBLIC.items() if home is errors}


def test_star_import_and_dir() -> None:
    namespace: dict[str, object] = {}
    exec("from nightfold import *", namespace)
    assert set(PUBLIC) <= set(namespace)
    assert set(PUBLIC) <= set(dir(nightfold))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = nightfold.no_such_name  # type: ignore[attr-defined]


def test_import_nightfold_is_light() -> None:
    """``import nightfold`` (paid by every process) loads neither the CLI, the
    job registry (entry-point discovery) nor any backend library."""
    code = (
        "import sys, nightfold; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('nightfold', 'click', 'sqlalchemy', 'happybase', 'pika', 'rich', 'importlib_metadata'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out.split(",") == ["nightfold", "nightfold.common", "nightfold.common.errors"]


def test_old_paths_keep_working() -> None:
    old = importlib.import_module("nightfold.common.jobs")
    assert old.Job is nightfold.Job and old.register is nightfold.register
