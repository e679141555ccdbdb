"""Reading ahead: an iterator's next batches fetched in a thread while the caller
works on the current one.

Why: a map worker alternates between waiting for HBase (the gateway scanning and
serializing the next batch of rows) and folding the batch it has, in Python. Read
ahead, the two overlap: the gateway's work and the socket wait run while the
worker folds, so a chunk takes about the longer of the two instead of their sum.

The source is opened *inside* the thread (``open_source``), so a backend whose
connections belong to one thread (happybase's are not thread-safe) gives the
thread a connection of its own; the caller keeps its own for writes meanwhile.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

T = TypeVar("T")

PUT_WAIT_S = 0.1
"""How often a pump blocked on a full queue checks whether the reader left."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def read_ahead(
    open_source: Callable[[], AbstractContextManager[Iterator[T]]],
    batch: int,
    depth: int = 2,
    name: str = "read-ahead",
) -> Generator[T, None, None]:
    """The items of the iterator ``open_source()`` gives, in order, fetched up to
    ``depth`` batches of ``batch`` items ahead by a daemon thread.

    An error of the source (opening or iterating) is raised here, after the items
    read before it, exactly as iterating the source directly would. Closing this
    generator early (the caller stops at a key) tells the thread to stop; it
    leaves after the fetch it is in, closing the source on its own thread.
    """
    if batch < 1 or depth < 1:
        raise ValueError(f"batch and depth must be >= 1, got {batch} and {depth}")
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    left = threading.Event()

    def offer(item: object) -> bool:
        """Queue ``item`` unless the reader left; False when it did."""
        while not left.is_set():
            try:
                slots.put(item, timeout=PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        items: list[T] = []
        try:
            with open_source() as source:
                while True:
                    items.extend(itertools.islice(source, batch))  # kept if the source fails
                    if not items or not offer(items):
                        break
                    items = []
        except BaseException as exc:  # handed to the reader, raised there
            if items and not offer(items):  # what the source gave before failing, first
                return
            offer(_Failed(exc))
            return
        offer(_END)

    thread = threading.Thread(target=pump, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            assert isinstance(item, list)
            yield from item
    finally:
        left.set()
