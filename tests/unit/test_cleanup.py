"""The one cleanup policy of the tests and the benchmarks (:func:`clean_up`): the
tests fail on a leftover, the benchmarks retry and then only log it."""

from __future__ import annotations

import pytest

from tests.support import cleanup


class Flaky:
    """An action that fails its first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down (call {self.calls})")


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup, "RETRY_PAUSE_S", 0.0)


def test_once_and_loud_by_default() -> None:
    action = Flaky(failures=1)
    with pytest.raises(ConnectionError):
        cleanup.clean_up(action, "drop database x")
    assert action.calls == 1


def test_retries_until_it_works() -> None:
    action = Flaky(failures=2)
    said: list[str] = []
    cleanup.clean_up(action, "drop database x", attempts=3, say=said.append)
    assert action.calls == 3 and said == []


def test_the_last_failure_is_said_not_raised_when_asked() -> None:
    action = Flaky(failures=5)
    said: list[str] = []
    cleanup.clean_up(action, "delete queue q", attempts=3, say=said.append)
    assert action.calls == 3
    assert said == ["could not delete queue q: down (call 3)"]


def test_without_say_the_last_failure_is_raised() -> None:
    action = Flaky(failures=5)
    with pytest.raises(ConnectionError, match="call 2"):
        cleanup.clean_up(action, "delete queue q", attempts=2)
