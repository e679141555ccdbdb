"""Partials split across bounded cells and joined back (worker/cells.py): any bytes,
any bound, any group name -- NUL, "/", digits, unicode -- round-trip exactly; no
piece exceeds the bound; a row whose pieces do not add up fails deterministically."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.errors import CorruptPartial
from nightfold.worker.cells import SEP, join, split

groups = st.one_of(
    st.text(),
    st.sampled_from(["", "\x00", "a\x00", "a\x000001/0002", "/", "0000/0001", "ü€😀", "~invalid"]),
)
values = st.binary(max_size=4096)
bounds = st.integers(min_value=1, max_value=5000)


@given(groups, values, bounds)
def test_join_of_split_is_the_value_and_no_piece_exceeds_the_bound(
    group: str, value: bytes, bound: int
) -> None:
    cells = split(group, value, bound)
    assert all(len(piece) <= bound for _, piece in cells)
    assert len(cells) == max(1, -(-len(value) // bound))
    assert join(cells) == {group: value}


@given(st.dictionaries(groups, values, max_size=8), bounds, st.randoms())
def test_many_groups_in_one_row_in_any_order(
    partials: dict[str, bytes], bound: int, rnd: random.Random
) -> None:
    cells = [cell for g, v in partials.items() for cell in split(g, v, bound)]
    rnd.shuffle(cells)
    assert len({q for q, _ in cells}) == len(cells)  # qualifiers never collide
    assert join(cells) == partials


@given(groups, values)
def test_legacy_single_cell_partials_still_read(group: str, value: bytes) -> None:
    # written by nightfold before pieces: qualifier = the group's UTF-8 bytes
    assert join([(group.encode(), value)]) == {group: value}


def test_a_group_containing_nul_or_digits_parses_from_the_separator() -> None:
    cells = split("m\x000001/0002", b"abcdef", 4)
    assert [q for q, _ in cells] == [
        b"m\x000001/0002" + SEP + b"0000/0002",
        b"m\x000001/0002" + SEP + b"0001/0002",
    ]


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ([(b"g" + SEP + b"0000/0002", b"ab")], "1 of 2 pieces missing"),
        (
            [(b"g" + SEP + b"0000/0002", b"ab"), (b"g" + SEP + b"0001/0003", b"c")],
            "disagree on their count",
        ),
        ([(b"g" + SEP + b"0002/0002", b"ab")], "malformed partial qualifier"),
        ([(b"g" + SEP + b"1/2", b"ab")], "malformed partial qualifier"),
        ([(b"g" + SEP + b"x", b"ab")], "malformed partial qualifier"),
        ([(b"g", b"ab"), (b"g" + SEP + b"0000/0001", b"ab")], "a whole cell and pieces"),
        ([(b"\xc3" + SEP + b"0000/0001", b"ab")], "not UTF-8"),
    ],
)
def test_pieces_that_do_not_add_up_are_a_clear_error(
    cells: list[tuple[bytes, bytes]], reason: str
) -> None:
    with pytest.raises(CorruptPartial, match=reason):
        join(cells)


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        split("g", b"x", 0)
