"""The worker's record of which chunk each processing thread holds, read by the
heartbeat thread while processing threads come, go and change it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from nightfold.worker.liveness import CurrentChunks


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible, so an unlocked read would meet a resize."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@contextmanager
def churning(current: CurrentChunks, threads: int = 8) -> Iterator[None]:
    """Threads that keep registering, changing and forgetting their entry meanwhile."""
    stop = threading.Event()

    def churn(n: int) -> None:
        while not stop.is_set():
            current.set(None)
            current.set(n)
            current.forget()

    running = [threading.Thread(target=churn, args=(n,), daemon=True) for n in range(threads)]
    for t in running:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in running:
            t.join()


def test_any_is_none_when_idle_and_a_chunk_when_busy() -> None:
    current = CurrentChunks()
    assert current.any() is None
    current.set(None)
    assert current.any() is None
    current.set(42)
    assert current.any() == 42
    current.forget()
    assert current.any() is None


def test_reading_while_threads_come_and_go_never_fails(fast_switching: None) -> None:
    # Given threads that keep registering, changing and forgetting their entry
    current = CurrentChunks()
    # When the heartbeat side reads many times meanwhile
    with churning(current):
        seen = {current.any() for _ in range(20_000)}
    # Then every read returned an entry or None, none raised
    assert seen <= {None, *range(8)}


def test_the_unlocked_read_of_the_old_runner_does_fail(fast_switching: None) -> None:
    """The control of the test above: the old heartbeat read the dict without the
    lock (``next(v for v in current.values() ...)``) while processing threads
    came and went. Under the same churn that read raises, so the test above
    would have caught the defect."""
    current = CurrentChunks()

    def unlocked_any() -> int | None:
        return next((c for c in current._by_thread.values() if c is not None), None)

    with churning(current), pytest.raises(RuntimeError, match="changed size during iteration"):
        for _ in range(2_000_000):  # raises within ~20k reads in practice
            unlocked_any()
