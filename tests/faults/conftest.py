"""Fault tests restart the shared MariaDB, RabbitMQ and HBase Thrift server, so they
run on their own, after everything else (``make test`` runs ``pytest tests/faults``
as a separate, last step): collected in a session with other tests, they skip.

The services are required like the integration tests': missing, the fault tests
skip locally and fail with ``CI=true``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault injection on the real services (run alone: pytest tests/faults)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if ours and len(ours) != len(items):
        skip = pytest.mark.skip(
            reason="fault tests restart the shared services: run them on their own "
            "(pytest tests/faults, or make chaos)"
        )
        for item in ours:
            item.add_marker(skip)
