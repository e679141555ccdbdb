"""Pick the transport from the broker URL: ``amqp://`` (RabbitMQ) or ``db://`` (embedded).

The seam does not depend on the database layer: the ``db://`` consumer is handed
the poll it runs (``queued``, e.g. ``common/db/poll.py``'s ``queued_chunks``) by
the caller that owns the database.
"""

from __future__ import annotations

from nightfold.common.errors import ConfigError
from nightfold.common.transport.base import Consumer, Delivery, Publisher, QueuedPoll
from nightfold.common.transport.messages import Hint
from nightfold.common.urls import mask_url, scheme_of

__all__ = [
    "Consumer",
    "Delivery",
    "Hint",
    "Publisher",
    "QueuedPoll",
    "open_consumer",
    "open_publisher",
]

EMBEDDED_SCHEMES = ("db", "dbpoll")


def _check(url: str) -> str:
    scheme = scheme_of(url)
    if scheme in ("amqp", "amqps") or scheme in EMBEDDED_SCHEMES:
        return scheme
    raise ConfigError(
        f"broker URL {mask_url(url)!r}: unsupported scheme {scheme!r} (use amqp:// or db://)"
    )


def open_publisher(url: str) -> Publisher:
    if _check(url) in EMBEDDED_SCHEMES:
        from nightfold.common.transport.dbpoll import DbPollPublisher

        return DbPollPublisher()
    from nightfold.common.transport.rabbitmq import RabbitPublisher

    return RabbitPublisher(url)


def open_consumer(url: str, prefetch: int, *, queued: QueuedPoll | None = None) -> Consumer:
    """The consumer for the broker ``url``; ``db://`` needs ``queued``, the poll of
    queued chunks it hands out (RabbitMQ ignores it)."""
    if _check(url) in EMBEDDED_SCHEMES:
        from nightfold.common.transport.dbpoll import DbPollConsumer

        if queued is None:
            raise ConfigError(f"broker URL {mask_url(url)!r} needs the database to poll")
        return DbPollConsumer(queued)
    from nightfold.common.transport.rabbitmq import RabbitConsumer

    return RabbitConsumer(url, prefetch)
