"""The RabbitMQ transport on the real broker: confirmed persistent hints,
prefetch, acks from another thread, garbage to the dead-letter queue."""

from __future__ import annotations

import threading

import pika

from nightfold.common.transport.messages import Hint
from nightfold.common.transport.rabbitmq import RabbitConsumer, RabbitPublisher, queue_depth


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


def test_garbage_is_dead_lettered(broker_url: str) -> None:
    consumer = RabbitConsumer(broker_url, prefetch=2)
    try:
        consumer.next_delivery(0.1)  # declares the queues
        params = pika.URLParameters(broker_url.split("?", 1)[0])
        conn = pika.BlockingConnection(params)
        queue = broker_url.split("queue=", 1)[1].split("&", 1)[0]
        conn.channel().basic_publish("", queue, b"\x80\x04 not a hint")
        conn.close()
        (delivery,) = _drain(consumer, 1)
        assert delivery.hint is None and "not JSON" in (delivery.error or "")
        consumer.reject(delivery)
        consumer.pump(0.5)
    finally:
        consumer.close()
    assert queue_depth(broker_url) == (0, 1)
