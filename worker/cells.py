"""Bounded partial cells: one group's encoded partial split across cells of at
most ``bound`` bytes, and joined back for the reduce. Pure: no I/O.

Why: HBase refuses a cell above ``hbase.client.keyvalue.maxsize`` (10 MB by
default), and a group's partial grows with its distinct ids (a merchant with
long customer and product ids reached 12 MB in one chunk, issue 13). Splitting
makes a chunk's partials writable whatever the ids; the run's ``max_cell_bytes``
sets ``bound``.

Qualifier of every piece (the family prefix ``p:`` is the caller's)::

    <group as UTF-8> 0xFF <index:%04d> "/" <count:%04d>

The separator byte 0xFF never occurs in UTF-8, so it cannot occur in a group
name (NUL, "/", digits and any other text included): the qualifier parses
unambiguously, and a qualifier without 0xFF is a *legacy* cell, the whole
partial written by nightfold before pieces existed (a run mapped by the old
code stays reducible by the new). Digits are canonical (``%04d``, wider only
when needed) so one piece has exactly one qualifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nightfold.common.errors import CorruptPartial

SEP = b"\xff"
_SUFFIX = re.compile(rb"(\d+)/(\d+)")


def _suffix(index: int, count: int) -> bytes:
    return b"%04d/%04d" % (index, count)


def split(group: str, value: bytes, bound: int) -> list[tuple[bytes, bytes]]:
    """``(qualifier, piece)`` cells holding ``value``, each piece at most ``bound`` bytes.

    An empty value is one empty piece, so every group has at least one cell.
    """
    if bound < 1:
        raise ValueError(f"bound must be positive, got {bound}")
    pieces = [value[i : i + bound] for i in range(0, len(value), bound)] or [b""]
    head = group.encode() + SEP
    count = len(pieces)
    return [(head + _suffix(i, count), piece) for i, piece in enumerate(pieces)]


def join(cells: Iterable[tuple[bytes, bytes]]) -> dict[str, bytes]:
    """Group -> whole value from the cells of one row (qualifiers without family).

    Raises :class:`CorruptPartial` when a group's pieces do not add up: one
    missing or duplicated, counts that disagree, a malformed qualifier, or a
    legacy cell next to pieces of the same group. Deterministic: the same row
    always fails the same way.
    """
    whole: dict[bytes, bytes] = {}
    pieces: dict[bytes, dict[int, bytes]] = {}
    counts: dict[bytes, int] = {}
    for qualifier, value in cells:
        head, sep, suffix = qualifier.rpartition(SEP)
        if not sep:  # legacy: the whole partial in one cell, qualifier = group
            whole[qualifier] = value
            continue
        m = _SUFFIX.fullmatch(suffix)
        if m is None or SEP in head:
            raise CorruptPartial(f"malformed partial qualifier {qualifier!r}")
        index, count = int(m[1]), int(m[2])
        if not index < count or suffix != _suffix(index, count):
            raise CorruptPartial(f"malformed partial qualifier {qualifier!r}")
        if counts.setdefault(head, count) != count:
            raise CorruptPartial(f"group {_name(head)!r}: pieces disagree on their count")
        pieces.setdefault(head, {})[index] = value
    out: dict[str, bytes] = {}
    for head, value in whole.items():
        if head in pieces:
            raise CorruptPartial(f"group {_name(head)!r}: a whole cell and pieces in one row")
        out[_text(head)] = value
    for head, parts in pieces.items():
        count = counts[head]
        if len(parts) != count:
            missing = sorted(set(range(count)) - set(parts))
            raise CorruptPartial(
                f"group {_name(head)!r}: {len(missing)} of {count} pieces missing "
                f"(first: {missing[0]})"
            )
        out[_text(head)] = b"".join(parts[i] for i in range(count))
    return out


def _name(head: bytes) -> str:
    return head.decode("utf-8", errors="replace")


def _text(head: bytes) -> str:
    try:
        return head.decode()
    except UnicodeDecodeError:
        raise CorruptPartial(f"partial group {head!r} is not UTF-8") from None
