"""Planning's sampling scan on several connections gives exactly the samples and
the count of the one-connection scan (so the plan is the same), on the embedded
store; an outage reaches the master as ServiceUnavailable."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightfold.common.errors import ServiceUnavailable
from nightfold.common.keys import day_ranges, raw_key
from nightfold.common.store.local import LocalStore
from nightfold.master.planner import sample_keys, sample_keys_parallel

DAY = dt.date(2026, 11, 22)
SALTS = 6


@settings(max_examples=25, deadline=None)
@given(
    orders=st.lists(
        st.tuples(st.integers(0, SALTS - 1), st.integers(0, 50), st.integers(0, 10**6)),
        max_size=400,
    ),
    every=st.integers(1, 40),
    threads=st.integers(1, 8),
)
def test_parallel_sampling_equals_sequential(
    orders: list[tuple[int, int, int]], every: int, threads: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite"
        store = LocalStore(path)
        store.ensure_table("raw", ["o"])
        other_day = DAY + dt.timedelta(days=1)
        rows = [(raw_key(s, DAY, f"m{m:03d}", f"{o:08d}"), {b"o:v": b"1"}) for s, m, o in orders]
        rows.append((raw_key(0, other_day, "m000", "x"), {b"o:v": b"1"}))  # not sampled
        store.put_many("raw", rows)
        ranges = day_ranges(DAY, SALTS)
        opened: list[LocalStore] = []

        def open_store() -> LocalStore:
            opened.append(LocalStore(path))
            return opened[-1]

        try:
            expected = sample_keys(store, "raw", ranges, every)
            got = sample_keys_parallel(open_store, "raw", ranges, every, threads)
        finally:
            store.close()
        assert got == expected
        assert got[1] == len({k for k, _ in rows}) - 1
        assert 1 <= len(opened) <= min(threads, SALTS)


def test_an_outage_reaches_the_caller(tmp_path: Path) -> None:
    def open_store() -> LocalStore:
        raise ServiceUnavailable("hbase", "127.0.0.1:9090: connection refused")

    with pytest.raises(ServiceUnavailable, match="connection refused"):
        sample_keys_parallel(open_store, "raw", day_ranges(DAY, SALTS), 10, threads=3)
