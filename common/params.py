"""The run parameters: the knobs a run is planned with.

A pure value object of its own, so that settings (``common/config.py``) can
default to it without importing the repository (``common/db/runs.py`` stores it
as JSON on the run row).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from nightfold.common.errors import ConfigError

MAX_CELL_BYTES_LIMIT = 8 << 20
"""The largest ``max_cell_bytes`` allowed: room below HBase's 10 MB default for
the row key, the qualifier and HBase's own per-cell overhead."""


@dataclass(frozen=True)
class RunParams:
    """The knobs a run was planned with, frozen on the run row so that a
    restarted master or any worker sees exactly the same ones."""

    chunk_rows: int = 50_000
    reduce_buckets: int = 8
    max_in_flight: int = 64
    max_attempts: int = 3
    lease_seconds: float = 60.0
    salt_buckets: int = 16
    republish_seconds: float = 30.0
    scan_batch: int = 1000
    max_cell_bytes: int = 1 << 20
    """Largest cell a chunk writes: a bigger partial is split into pieces of at
    most this size, a bigger summary cell fails the chunk (a job bug). Well under
    HBase's ``hbase.client.keyvalue.maxsize`` (10 MB by default)."""
    checkpoint_rows: int = 75_000
    """A map chunk commits a segment (its partials so far and the key it reached)
    every this many rows, so a taker after a kill re-reads at most about this many
    (and a chunk's map memory is bounded by it). 1.5 x ``chunk_rows`` by default: a
    chunk of about the planned size is one segment, committed with its completion
    (at 1 x, most chunks, which come out a little over the plan, paid for a second,
    tiny segment: its partials written and read again, one more commit), and a chunk
    far over its plan still checkpoints every 1.5 planned chunks."""
    checkpoint_seconds: float = 30.0
    """... or every this many seconds, whichever comes first."""
    split_min_rows: int = 10_000
    """A running map chunk is split only when both halves would keep at least this
    many rows: below that a new chunk costs more than it saves. A billion or more
    turns run-time splits off."""

    spill_bytes: int = 4 << 20
    """A reduce item of a sharded job reduces a group whose partials pass this many
    encoded bytes in shards from local disk (``worker/spill.py``), so its memory
    stays bounded when the plan missed that the group is hot."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ConfigError(f"{f.name} must be positive, got {value!r}")
        if self.salt_buckets > 100:
            raise ConfigError(f"salt_buckets must be at most 100, got {self.salt_buckets}")
        if self.max_cell_bytes > MAX_CELL_BYTES_LIMIT:
            raise ConfigError(
                f"max_cell_bytes must be at most {MAX_CELL_BYTES_LIMIT} (HBase refuses cells"
                f" above 10 MB by default), got {self.max_cell_bytes}"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunParams:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
