"""Row keys and key ranges: the vocabulary every seam speaks.

Raw rows are keyed ``SS|YYYYMMDD|merchant|order`` where ``SS`` is a two-digit
salt bucket, so one day is ``salt_buckets`` contiguous ranges, one per salt.
Ranges are half-open ``[start, end)`` over raw bytes, the way HBase scans are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from nightfold.common.errors import ConfigError

SEP = b"|"

PARTIALS_TABLE = "nightfold_partials"
"""Where map chunks leave their partials for the reduce stage (the shuffle)."""
PARTIAL_FAMILY = "p"


@dataclass(frozen=True, order=True)
class KeyRange:
    """A half-open byte range ``[start, end)``; an empty ``end`` means unbounded.

    Invalid ranges cannot be built: ``start < end`` unless ``end`` is unbounded.
    """

    start: bytes
    end: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.start, bytes) or not isinstance(self.end, bytes):
            raise TypeError("KeyRange bounds must be bytes")
        if self.end and self.start >= self.end:
            raise ValueError(f"empty or inverted key range {self.start!r}..{self.end!r}")

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        return key >= self.start and (not self.end or key < self.end)

    def __repr__(self) -> str:
        return f"KeyRange({self.start!r}, {self.end!r})"


def prefix_range(prefix: bytes) -> KeyRange:
    """The range of every key that starts with ``prefix``."""
    if not prefix:
        return KeyRange(b"", b"")
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return KeyRange(prefix, b"")
    end = stripped[:-1] + bytes([stripped[-1] + 1])
    return KeyRange(prefix, end)


def common_prefix(a: bytes, b: bytes) -> bytes:
    """The longest prefix ``a`` and ``b`` share: where cut points are computed from
    (the planner's interpolated cuts, a worker's split cut)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def day_token(day: dt.date) -> bytes:
    return day.strftime("%Y%m%d").encode()


def salt_token(salt: int) -> bytes:
    if not 0 <= salt < 100:
        raise ConfigError(f"salt bucket {salt} out of range 0..99")
    return b"%02d" % salt


def day_ranges(day: dt.date, salt_buckets: int) -> list[KeyRange]:
    """The raw-table ranges that hold one day, one per salt bucket, in key order."""
    if not 1 <= salt_buckets <= 100:
        raise ConfigError(f"salt buckets must be 1..100, got {salt_buckets}")
    token = day_token(day)
    return [prefix_range(salt_token(s) + SEP + token + SEP) for s in range(salt_buckets)]


def move_day(key: bytes, old: dt.date, new: dt.date) -> bytes | None:
    """``key`` of day ``old`` at the same place in day ``new``: ``SS|old…`` becomes
    ``SS|new…`` (the bounds :func:`day_ranges` makes too); ``None`` for a key that
    is not inside one of ``old``'s ranges. How an earlier night's chunk boundaries
    become today's guideposts."""
    head = len(b"00|")
    token = day_token(old)
    if (
        len(key) < head + len(token)
        or not key[:2].isdigit()
        or key[2:head] != SEP
        or key[head : head + len(token)] != token
    ):
        return None
    return key[:head] + day_token(new) + key[head + len(token) :]


def raw_key(salt: int, day: dt.date, merchant: str, order_id: str) -> bytes:
    return SEP.join((salt_token(salt), day_token(day), merchant.encode(), order_id.encode()))


def partial_prefix(job: str, day: dt.date, generation: int, bucket: int | None = None) -> bytes:
    """Key prefix of a run's map partials, or of one reduce bucket of them."""
    base = SEP.join((job.encode(), day_token(day), b"%04d" % generation)) + SEP
    if bucket is None:
        return base
    return base + b"%04d" % bucket + SEP


def partial_key(job: str, day: dt.date, generation: int, bucket: int, chunk_index: int) -> bytes:
    """Where map chunk ``chunk_index`` writes its share of reduce bucket ``bucket``.

    Derived only from the run and the chunk, so a retried or raced chunk
    overwrites the same cells with the same bytes.
    """
    return partial_prefix(job, day, generation, bucket) + b"%06d" % chunk_index


def span_id(start: bytes, end: bytes) -> bytes:
    """A short name of the key span ``[start, end)`` (16 hex digits): the identity of a
    segment's rows, so of its partial's bytes."""
    digest = hashlib.blake2b(len(start).to_bytes(4, "big") + start + end, digest_size=8)
    return digest.hexdigest().encode()


def segment_key(
    job: str, day: dt.date, generation: int, bucket: int, chunk_index: int, seq: int, span: bytes
) -> bytes:
    """Where segment ``seq`` of map chunk ``chunk_index``, holding the rows of the key
    span named ``span`` (:func:`span_id`), keeps its share of reduce bucket ``bucket``.

    Bucket first, so a reduce item still reads one prefix. The span is part of the
    key because which rows a segment holds depends on where its attempt resumed,
    when it checkpointed and whether its chunk was split meanwhile: two writers of
    one key wrote the same rows, so the same bytes (a retry, a race), and a writer of
    another span -- a killed attempt's last segment, a frozen owner that never
    learned of a split -- writes beside the committed segment, never over it. The
    reduce reads only the segments MySQL committed (``common/db/segments.py``).
    """
    return partial_key(job, day, generation, bucket, chunk_index) + b"|%06d|" % seq + span


def parse_segment_key(key: bytes, prefix_len: int) -> tuple[int, int, bytes] | None:
    """``(chunk index, seq, span)`` of a segment's partial row whose bucket prefix is
    ``prefix_len`` bytes long; None for any other row (a pre-segment partial)."""
    parts = key[prefix_len:].split(SEP)
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1]), parts[2]


COMBINE_MARK = b"c"
"""Marks a run's combine inputs inside its partials prefix: ``job|day|gen|c<bucket>|``
never starts like a reduce bucket's ``job|day|gen|<bucket>|`` (digits), so a reduce
scan never sees them, and ``gc`` (the whole run prefix) removes them with the partials."""


def combine_prefix(job: str, day: dt.date, generation: int, bucket: int) -> bytes:
    """Key prefix of the per-shard results a combine item (one per bucket) reads."""
    return partial_prefix(job, day, generation) + COMBINE_MARK + b"%04d" % bucket + SEP


def combine_key(job: str, day: dt.date, generation: int, bucket: int, reduce_index: int) -> bytes:
    """Where reduce item ``reduce_index`` leaves the shard results of combine item
    ``bucket``'s groups: derived only from the run and the two items, so a redone
    reduce overwrites the same cells with the same bytes."""
    return combine_prefix(job, day, generation, bucket) + b"%06d" % reduce_index


HOT_COLUMN = PARTIAL_FAMILY.encode() + b":hot"


def hot_groups_key(job: str, day: dt.date, generation: int) -> bytes:
    """Where a planner before migration 0004 left a run's hot groups (those a sharded
    job splits): inside the run's partials prefix (``gc`` removes it), apart from every
    bucket's rows. Read only for such runs; the plan now records them on the run row."""
    return partial_prefix(job, day, generation) + b"hot"


def summary_prefix(day: dt.date) -> bytes:
    """Key prefix of one day's summary rows, ``YYYYMMDD|``: fixed width, so no other day's."""
    return day_token(day) + SEP


def summary_key(day: dt.date, group: str) -> bytes:
    return summary_prefix(day) + group.encode()
