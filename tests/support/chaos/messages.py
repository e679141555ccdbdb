"""Polluting the trial's work queue as any client could: duplicate hints, stale ones
(chunks done, chunks and runs that do not exist), every hint of the run in random
order, and garbage the workers must dead-letter without unpickling it."""

from __future__ import annotations

import pickle
import random

from sqlalchemy import select

from nightfold.common.db.models import Chunk
from nightfold.common.transport.messages import Hint
from nightfold.common.transport.rabbitmq import declare
from nightfold.common.urls import with_query
from tests.support.chaos.observe import Snap
from tests.support.chaos.plan import Fault
from tests.support.chaos.rig import Rig

GARBAGE = (
    b"",
    b"not json at all",
    b"\xff\xfe\x00\x01 binary",
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"v": 2, "run": 1, "chunk": 1, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": -5, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": "7", "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": 1.0, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": true, "stage": "map", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": 1, "stage": "shuffle", "idx": 0}',
    b'{"v": 1, "run": 1, "chunk": 1, "stage": "map", "idx": 0',
    b"A" * 5000,
    pickle.dumps({"run": 1, "chunk": 1}),  # never unpickled: must be dead-lettered
)


def publish(rig: Rig, f: Fault, snap: Snap) -> None:
    assert rig.engine is not None and snap.run_id is not None
    rng = random.Random(f"{rig.plan.seed}:{f.kind}:{f.variant}")
    with rig.engine.connect() as conn:
        chunks = [
            (int(r[0]), str(r[1]), int(r[2]), str(r[3]))
            for r in conn.execute(
                select(Chunk.id, Chunk.stage, Chunk.idx, Chunk.state).where(
                    Chunk.run_id == snap.run_id
                )
            )
        ]
    run_id = snap.run_id

    def hint(c: tuple[int, str, int, str]) -> bytes:
        return Hint(run_id, c[0], c[1], c[2]).encode()

    bodies: list[bytes] = []
    if f.kind == "msg_duplicate":
        live = [c for c in chunks if c[3] in ("queued", "claimed")] or chunks
        for c in live:
            bodies += [hint(c)] * rng.randint(2, 4)
    elif f.kind == "msg_stale":
        done = [c for c in chunks if c[3] == "done"]
        bodies += [hint(c) for c in done]
        top = max(c[0] for c in chunks)
        bodies += [Hint(run_id, top + i, "map", i).encode() for i in range(1, 4)]
        bodies += [Hint(run_id + 7, top + 50, "reduce", 0).encode()]
        bodies += [hint(c) for c in chunks if c[1] == "reduce" and c[3] == "pending"]
    elif f.kind == "msg_reordered":
        shuffled = list(chunks)
        rng.shuffle(shuffled)
        bodies += [hint(c) for c in shuffled]
    else:
        bodies = rng.sample(GARBAGE, rng.randint(4, len(GARBAGE)))
        rig.garbage_sent += len(bodies)
    if f.kind != "msg_garbage":
        rng.shuffle(bodies)
    _publish_raw(with_query(rig.env.broker_url, queue=rig.queue), rig.queue, bodies)
    rig.fired(f, f.kind, f"{len(bodies)} messages in {snap.phase}")


def _publish_raw(url: str, queue: str, bodies: list[bytes]) -> None:
    """Publish bodies straight onto the work queue, as any client could."""
    import pika

    params = pika.URLParameters(url.split("?", 1)[0])
    params.socket_timeout = 10
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        declare(ch, queue)
        props = pika.BasicProperties(delivery_mode=2)
        for body in bodies:
            ch.basic_publish(exchange="", routing_key=queue, body=body, properties=props)
    finally:
        conn.close()
