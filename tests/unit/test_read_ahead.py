"""Reading ahead (common/store/ahead.py): same items, same order, same errors,
and the source closed on its own thread however the reader stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.common.store.ahead import read_ahead


class Source:
    """A source that records which thread opened and closed it."""

    def __init__(self, items: list[int], fail_after: int | None = None) -> None:
        self.items = items
        self.fail_after = fail_after
        self.opened_on: str | None = None
        self.closed_on: str | None = None
        self.closed = threading.Event()

    @contextmanager
    def open(self) -> Iterator[Iterator[int]]:
        self.opened_on = threading.current_thread().name
        try:
            yield self._items()
        finally:
            self.closed_on = threading.current_thread().name
            self.closed.set()

    def _items(self) -> Iterator[int]:
        for n, item in enumerate(self.items):
            if self.fail_after is not None and n == self.fail_after:
                raise ConnectionError(f"lost after {n}")
            yield item
        if self.fail_after is not None and self.fail_after >= len(self.items):
            raise ConnectionError("lost at the end")


@settings(max_examples=50, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=60),
    batch=st.integers(1, 7),
    depth=st.integers(1, 3),
)
def test_every_item_arrives_in_order(items: list[int], batch: int, depth: int) -> None:
    # Given a source / When read ahead in any batch size and depth
    source = Source(items)
    got = list(read_ahead(source.open, batch, depth))

    # Then the items are the source's, in order, read and closed on another thread
    assert got == items
    assert source.closed.wait(5)
    assert source.opened_on == source.closed_on != threading.current_thread().name


@settings(max_examples=30, deadline=None)
@given(items=st.lists(st.integers(), min_size=1, max_size=40), data=st.data())
def test_an_error_comes_after_the_items_read_before_it(
    items: list[int], data: st.DataObject
) -> None:
    # Given a source that fails after some items
    fail_after = data.draw(st.integers(0, len(items)))
    source = Source(items, fail_after)

    # When read ahead / Then those items arrive, then the same error
    got: list[int] = []
    with pytest.raises(ConnectionError, match="lost"):
        for item in read_ahead(source.open, batch=3):
            got.append(item)
    assert got == items[:fail_after]


def test_a_reader_that_stops_early_closes_the_source() -> None:
    # Given a long source read ahead
    source = Source(list(range(10_000)))
    rows = read_ahead(source.open, batch=10, depth=2)

    # When the reader takes a few and closes the generator
    assert [next(rows) for _ in range(5)] == [0, 1, 2, 3, 4]
    rows.close()

    # Then the thread stops and closes the source (it does not read the rest)
    assert source.closed.wait(5)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="batch and depth"):
        list(read_ahead(Source([]).open, batch=0))
