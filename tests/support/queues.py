"""A private RabbitMQ work queue per test or benchmark, deleted afterwards
(the tests' fixtures and ``bench.common.fresh_queue`` both use it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.cleanup import clean_up
from tests.support.services import unique_name


def delete_queue(broker_url: str, queue: str) -> None:
    """Delete ``queue`` and its dead-letter queue."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(broker_url.split("?", 1)[0]))
    try:
        ch = conn.channel()
        ch.queue_delete(queue)
        ch.queue_delete(f"{queue}.dead")
    finally:
        conn.close()


@contextmanager
def private_queue(
    broker_url: str,
    prefix: str,
    *,
    attempts: int = 1,
    say: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """A fresh work-queue name; the queue and its dead-letter queue are deleted after
    (``attempts`` and ``say``: :func:`tests.support.cleanup.clean_up`)."""
    queue = unique_name(prefix)
    try:
        yield queue
    finally:
        clean_up(
            lambda: delete_queue(broker_url, queue),
            f"delete queue {queue}",
            attempts=attempts,
            say=say,
        )
