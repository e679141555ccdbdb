"""Pick the transport from the broker URL: ``amqp://`` (RabbitMQ) or ``db://`` (embedded)."""

from __future__ import annotations

from sqlalchemy import Engine

from nightfold.common.errors import ConfigError
from nightfold.common.transport.base import Consumer, Delivery, Publisher
from nightfold.common.transport.messages import Hint
from nightfold.common.urls import mask_url, scheme_of

__all__ = ["Consumer", "Delivery", "Hint", "Publisher", "open_consumer", "open_publisher"]

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


def open_consumer(url: str, engine: Engine, database_url: str, prefetch: int) -> Consumer:
    if _check(url) in EMBEDDED_SCHEMES:
        from nightfold.common.transport.dbpoll import DbPollConsumer

        return DbPollConsumer(engine, database_url)
    from nightfold.common.transport.rabbitmq import RabbitConsumer

    return RabbitConsumer(url, prefetch)
