"""The one batching helper every store backend's bulk writes use."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.store.base import in_batches


@given(items=st.lists(st.integers()), size=st.integers(1, 20))
def test_batches_keep_order_and_size(items: list[int], size: int) -> None:
    batches = list(in_batches(items, size))
    assert [x for b in batches for x in b] == items
    assert all(len(b) == size for b in batches[:-1])
    assert all(1 <= len(b) <= size for b in batches)


def test_a_size_below_one_is_refused_even_for_nothing() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        list(in_batches([], 0))


@given(n=st.integers(0, 30), size=st.integers(1, 7))
def test_fold_rows_feeds_map_rows_batch_by_batch_and_reports_each_last_key(
    n: int, size: int
) -> None:
    from nightfold.common.jobs.base import MapOutput, fold_rows
    from nightfold.jobs.merchant_daily import MerchantDaily

    class Recording(MerchantDaily):
        def map_rows(self, rows, out):  # type: ignore[no-untyped-def]
            seen.append([k for k, _ in rows])

    seen: list[list[bytes]] = []
    lasts: list[bytes] = []
    rows = [(b"k%03d" % i, {}) for i in range(n)]
    fold_rows(Recording(), rows, MapOutput(), size, lasts.append)
    assert seen == [[k for k, _ in rows[i : i + size]] for i in range(0, n, size)]
    assert lasts == [b[-1] for b in seen]
