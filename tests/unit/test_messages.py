"""Hints are versioned JSON; anything else is a MalformedMessage, never a crash."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightfold.common.errors import MalformedMessage
from nightfold.common.transport.messages import MAX_BYTES, Hint, decode_hint


@given(
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.sampled_from(["map", "reduce"]),
    st.integers(0, 10**6),
)
def test_round_trip(run: int, chunk: int, stage: str, idx: int) -> None:
    hint = Hint(run, chunk, stage, idx)
    assert decode_hint(hint.encode()) == hint


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'{"v": 2, "run": 1, "chunk": 1, "stage": "map", "idx": 0}',
        b'{"v": 1, "run": 1, "chunk": 1, "stage": "map"}',
        b'{"v": 1, "run": "1", "chunk": 1, "stage": "map", "idx": 0}',
        b'{"v": 1, "run": -1, "chunk": 1, "stage": "map", "idx": 0}',
        b'{"v": 1, "run": 1, "chunk": 1, "stage": "shuffle", "idx": 0}',
        b'{"v": 1, "run": true, "chunk": 1, "stage": "map", "idx": 0}',
        b"\x80\x04K\x01.",  # a pickle
        b"{" * (MAX_BYTES + 1),
    ],
)
def test_garbage_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_hint(body)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(body: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        decode_hint(body)
