"""The work hint: the only message nightfold sends, as versioned JSON.

A hint says "chunk N of run R may be claimable", nothing more: the database is
the truth, so a lost, duplicated or stale hint is harmless. Never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nightfold.common.errors import MalformedMessage
from nightfold.common.states import Stage

VERSION = 1
STAGES = frozenset(s.value for s in Stage)
MAX_BYTES = 4096


@dataclass(frozen=True)
class Hint:
    run_id: int
    chunk_id: int
    stage: str
    idx: int

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": VERSION,
                "run": self.run_id,
                "chunk": self.chunk_id,
                "stage": self.stage,
                "idx": self.idx,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()


def decode_hint(body: bytes) -> Hint:
    """Parse a hint; raises MalformedMessage for anything that is not one."""
    if len(body) > MAX_BYTES:
        raise MalformedMessage(f"message of {len(body)} bytes exceeds {MAX_BYTES}")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"message is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("message is not a JSON object")
    if data.get("v") != VERSION:
        raise MalformedMessage(f"unsupported message version {data.get('v')!r}")
    try:
        run_id, chunk_id, stage, idx = data["run"], data["chunk"], data["stage"], data["idx"]
    except KeyError as exc:
        raise MalformedMessage(f"message lacks field {exc.args[0]!r}") from exc
    ints_ok = all(type(x) is int and x >= 0 for x in (run_id, chunk_id, idx))
    if not ints_ok or stage not in STAGES:
        raise MalformedMessage("message fields have the wrong types")
    return Hint(run_id=run_id, chunk_id=chunk_id, stage=stage, idx=idx)
