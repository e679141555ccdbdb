"""The RabbitMQ transport on the real broker: confirmed persistent hints,
prefetch, acks from another thread, garbage to the dead-letter queue."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pika
import pytest
from sqlalchemy import Engine

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.runs import RunParams
from nightfold.common.keys import KeyRange
from nightfold.common.states import RunState, Stage
from nightfold.common.transport.messages import Hint
from nightfold.common.transport.rabbitmq import RabbitConsumer, RabbitPublisher, queue_depth
from nightfold.master.dispatcher import dispatch


def _drain(consumer: RabbitConsumer, n: int, timeout: float = 10) -> list:  # type: ignore[type-arg]
    got = []
    for _ in range(int(timeout / 0.2)):
        d = consumer.next_delivery(0.2)
        if d is not None:
            got.append(d)
        if len(got) == n:
            break
    return got


def test_publish_consume_ack_from_another_thread(broker_url: str) -> None:
    pub = RabbitPublisher(broker_url)
    hints = [Hint(1, i, "map", i) for i in range(5)]
    pub.publish(hints)
    pub.close()
    consumer = RabbitConsumer(broker_url, prefetch=5)
    try:
        got = _drain(consumer, 5)
        assert sorted(d.hint.chunk_id for d in got) == [0, 1, 2, 3, 4]
        # acks travel from processing threads through add_callback_threadsafe
        threads = [threading.Thread(target=consumer.ack, args=(d,)) for d in got]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        consumer.pump(0.5)
    finally:
        consumer.close()
    assert queue_depth(broker_url) == (0, 0)


def test_unacked_hints_come_back(broker_url: str) -> None:
    pub = RabbitPublisher(broker_url)
    pub.publish([Hint(1, 7, "map", 0)])
    pub.close()
    first = RabbitConsumer(broker_url, prefetch=1)
    assert [d.hint.chunk_id for d in _drain(first, 1)] == [7]
    first.close()  # a worker died holding it
    second = RabbitConsumer(broker_url, prefetch=1)
    try:
        again = _drain(second, 1)
        assert [d.hint.chunk_id for d in again] == [7]
        assert again[0].extra["redelivered"] is True
        second.ack(again[0])
        second.pump(0.3)
    finally:
        second.close()


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"\x80\x04 not a hint", "not JSON"), (b"{" * (1 << 20), "exceeds")],
    ids=["pickle-like", "oversized-1MiB"],
)
def test_garbage_is_dead_lettered(broker_url: str, body: bytes, error: str) -> None:
    consumer = RabbitConsumer(broker_url, prefetch=2)
    try:
        consumer.next_delivery(0.1)  # declares the queues
        params = pika.URLParameters(broker_url.split("?", 1)[0])
        conn = pika.BlockingConnection(params)
        queue = broker_url.split("queue=", 1)[1].split("&", 1)[0]
        conn.channel().basic_publish("", queue, body)
        conn.close()
        (delivery,) = _drain(consumer, 1)
        assert delivery.hint is None and error in (delivery.error or "")
        consumer.reject(delivery)
        consumer.pump(0.5)
    finally:
        consumer.close()
    assert queue_depth(broker_url) == (0, 1)


def test_republish_does_not_grow_a_waiting_queue(engine: Engine, broker_url: str) -> None:
    # Given a run whose window holds 3 queued chunks and no worker to take them
    params = RunParams(max_in_flight=3, republish_seconds=0.2)
    with engine.begin() as conn:
        run = run_repo.create_run(conn, "merchant_daily", dt.date(2026, 11, 22), 1, params, "t")
        assert run is not None
        run_repo.move(conn, run.id, RunState.PLANNING, RunState.MAPPING, actor="t")
        specs = [
            ChunkSpec(Stage.MAP, i, KeyRange(b"k%02d" % i, b"k%02d" % (i + 1))) for i in range(8)
        ]
        chunk_repo.insert_plan(conn, run.id, specs)
    pub = RabbitPublisher(broker_url)
    try:
        # When the master's outbox step runs again and again past republish_seconds
        sent = [dispatch(engine, pub, run, Stage.MAP, "m")]
        for _ in range(5):
            time.sleep(0.3)
            sent.append(dispatch(engine, pub, run, Stage.MAP, "m"))
        # Then the hints still waiting in the broker are not published again
        assert sent == [3, 0, 0, 0, 0, 0]
        assert queue_depth(broker_url) == (3, 0)
        # But a lost hint (the queue emptied behind our back) is published again
        purge = pika.BlockingConnection(pika.URLParameters(broker_url.split("?", 1)[0]))
        purge.channel().queue_purge(broker_url.split("queue=", 1)[1].split("&", 1)[0])
        purge.close()
        time.sleep(0.3)
        assert dispatch(engine, pub, run, Stage.MAP, "m") == 3
        assert queue_depth(broker_url) == (3, 0)
    finally:
        pub.close()
