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
