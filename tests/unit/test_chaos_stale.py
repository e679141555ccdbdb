"""The chaos harness's no-stale-cells comparison (tests/support/chaos/stale.py): a
day's summary rows as stored against the oracle's, cell for cell, so that a row or a
column left over from an earlier generation is counted, not just a missing one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.support.chaos.stale import diff_cells

ROW = {b"s:orders": b"3", b"s:min_order_cents": b"120"}


def test_exactly_the_expected_cells_are_no_difference() -> None:
    d = diff_cells({b"d|m1": ROW}, {b"d|m1": dict(ROW)})
    assert not (d.stale_rows or d.stale_cells or d.wrong_cells)


def test_a_row_the_oracle_lacks_is_stale_with_every_cell() -> None:
    d = diff_cells({}, {b"d|gone": ROW})
    assert d.stale_rows == [b"d|gone"]
    assert d.stale_cells == [(b"d|gone", b"s:min_order_cents"), (b"d|gone", b"s:orders")]


def test_a_column_the_oracle_lacks_is_stale_and_a_changed_one_wrong() -> None:
    # Given a merchant whose orders all became malformed: no min any more, new count
    expected = {b"d|m1": {b"s:orders": b"0", b"s:malformed": b"3"}}
    d = diff_cells(expected, {b"d|m1": ROW})
    assert d.stale_rows == []
    assert d.stale_cells == [(b"d|m1", b"s:min_order_cents")]
    assert d.wrong_cells == [(b"d|m1", b"s:malformed"), (b"d|m1", b"s:orders")]


Table = dict[bytes, dict[bytes, bytes]]
cells = st.dictionaries(st.sampled_from([b"s:a", b"s:b", b"x:c"]), st.binary(max_size=2))
tables = st.dictionaries(st.sampled_from([b"d|1", b"d|2", b"d|3"]), cells)


@given(tables, tables)
def test_stale_and_wrong_cells_account_for_every_difference(expected: Table, stored: Table) -> None:
    d = diff_cells(expected, stored)
    have = {(r, c): v for r, row in stored.items() for c, v in row.items()}
    want = {(r, c): v for r, row in expected.items() for c, v in row.items()}
    assert set(d.stale_cells) == have.keys() - want.keys()
    assert set(d.stale_rows) == stored.keys() - expected.keys()
    assert set(d.wrong_cells) == {k for k, v in want.items() if have.get(k) != v}
    assert (not d.stale_cells and not d.wrong_cells) == (have == want)
