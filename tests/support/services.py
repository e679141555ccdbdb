"""Reaching the real services from tests.

Locally a missing service skips its tests; with ``CI=true`` it fails them:
CI starts every service, so a missing one is a broken build, never a skip.
URLs come from the environment or ``.nightfold/services.env`` (written by
``deploy/local/services up``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES_ENV = REPO / ".nightfold" / "services.env"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_url(var: str) -> str | None:
    """The URL in ``var``, from the environment or the services env file."""
    if os.environ.get(var):
        return os.environ[var]
    if SERVICES_ENV.exists():
        for line in SERVICES_ENV.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == var and value.strip():
                return value.strip()
    return None


def require_service(name: str, var: str, probe: Callable[[str], None]) -> str:
    """Return the service's URL after ``probe`` succeeded; skip locally, fail in CI."""
    url = service_url(var)
    why = None
    if url is None:
        why = f"{name}: {var} is not set and {SERVICES_ENV} has no entry (run `make services-up`)"
    else:
        try:
            probe(url)
        except Exception as exc:
            why = f"{name} at {url.split('@')[-1]} unreachable: {type(exc).__name__}: {exc}"
    if why is not None:
        if in_ci():
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    assert url is not None
    return url


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(4)}"
