"""A Store that counts what goes through it: instrumentation, not an imitation.

It wraps a real store (the embedded one or HBase) and records, per method, the
calls, the keys or rows they returned and the seconds they took, in a
:class:`Tally` that several wrapped connections (the planner's threads) share.
The planning tests assert bounds on it; the plan benchmark reads the costs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from nightfold.common.keys import KeyRange
from nightfold.common.store.base import CellDelete, Row, Store


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    """Keys or rows each method returned (probe_keys: keys; scan: rows)."""
    seconds: Counter[str] = field(default_factory=Counter)
    per_call: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, items: int, seconds: float) -> None:
        with self.lock:
            self.calls[method] += 1
            self.items[method] += items
            self.seconds[method] += seconds
            self.per_call.setdefault(method, []).append(seconds)

    def reads(self) -> int:
        """Store calls that read the raw table's rows or keys (scan and probe)."""
        return self.calls["scan"] + self.calls["probe_keys"]

    def keys_read(self) -> int:
        return self.items["scan"] + self.items["probe_keys"]


class CountingStore:
    """A :class:`Store` that forwards every call to ``inner`` and tallies it."""

    def __init__(self, inner: Store, tally: Tally | None = None) -> None:
        self.inner = inner
        self.tally = tally if tally is not None else Tally()

    def _timed(
        self, method: str, fn: Callable[[], object], count: Callable[[object], int]
    ) -> object:
        started = time.perf_counter()
        result = fn()
        self.tally.add(method, count(result), time.perf_counter() - started)
        return result

    def ensure_table(self, table: str, families: Sequence[str]) -> None:
        self._timed("ensure_table", lambda: self.inner.ensure_table(table, families), lambda _: 0)

    def scan(
        self,
        table: str,
        key_range: KeyRange,
        *,
        columns: Sequence[bytes] | None = None,
        batch_size: int = 1000,
        keys_only: bool = False,
        ahead: bool = False,
    ) -> Iterator[Row]:
        started = time.perf_counter()
        n = 0
        try:
            for row in self.inner.scan(
                table,
                key_range,
                columns=columns,
                batch_size=batch_size,
                keys_only=keys_only,
                ahead=ahead,
            ):
                n += 1
                yield row
        finally:
            self.tally.add("scan", n, time.perf_counter() - started)

    def put_many(self, table: str, rows: Iterable[Row], *, batch_size: int = 1000) -> int:
        return self.inner.put_many(table, rows, batch_size=batch_size)

    def region_starts(self, table: str) -> list[bytes]:
        started = time.perf_counter()
        starts = self.inner.region_starts(table)
        self.tally.add("region_starts", len(starts) + 1, time.perf_counter() - started)
        return starts

    def probe_keys(
        self, table: str, key_range: KeyRange, limit: int, *, reverse: bool = False
    ) -> list[bytes]:
        started = time.perf_counter()
        keys = self.inner.probe_keys(table, key_range, limit, reverse=reverse)
        self.tally.add("probe_keys", len(keys), time.perf_counter() - started)
        return keys

    def delete_range(self, table: str, key_range: KeyRange) -> int:
        return self.inner.delete_range(table, key_range)

    def delete_cells(
        self, table: str, deletes: Iterable[CellDelete], *, batch_size: int = 1000
    ) -> int:
        return self.inner.delete_cells(table, deletes, batch_size=batch_size)

    def drop_table(self, table: str) -> None:
        self.inner.drop_table(table)

    def close(self) -> None:
        self.inner.close()


def counting_opener(open_store: Callable[[], Store], tally: Tally) -> Callable[[], Store]:
    """``open_store`` whose connections all tally into ``tally``."""
    return lambda: CountingStore(open_store(), tally)
