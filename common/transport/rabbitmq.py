"""RabbitMQ transport through pika: durable queue, persistent hints published in
confirmed batches, prefetch, manual acks, and a dead-letter queue for garbage.

pika's BlockingConnection is not thread-safe: the consumer's connection is only
touched on its I/O thread; acks from processing threads travel through
``add_callback_threadsafe``, and only for tags of the current connection.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions

from nightfold.common.errors import (
    AccessRefused,
    ConfigError,
    MalformedMessage,
    ServiceUnavailable,
)
from nightfold.common.transport.base import Delivery
from nightfold.common.transport.messages import Hint, decode_hint
from nightfold.common.urls import mask_url

DEFAULT_QUEUE = "nightfold.chunks"
PUBLISH_BATCH = 1000
"""Hints per AMQP transaction (see :class:`RabbitPublisher`)."""


TLS_OPTIONS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_check_hostname")
"""TLS query options of an ``amqps://`` URL, named as in a ``mysql+pymysql://`` one."""


def parse_broker_url(url: str) -> tuple[pika.URLParameters, str]:
    """pika's parameters and the work queue's name for an ``amqp[s]://`` URL.

    nightfold's own query options (``queue``, the ``ssl_*`` TLS options) are taken
    out; pika's (``heartbeat``, ``ssl_options``, ...) pass through to it.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    queue = query.pop("queue", [DEFAULT_QUEUE])[0]
    tls = {k: query.pop(k)[0] for k in TLS_OPTIONS if k in query}
    if not parts.hostname:
        raise ConfigError(f"broker URL {mask_url(url)!r} names no host")
    if tls and "ssl_options" in query:
        raise ConfigError(f"broker URL {mask_url(url)!r}: use ssl_options or ssl_*, not both")
    rest = "&".join(f"{k}={v[0]}" for k, v in query.items())
    base = url.split("?", 1)[0]
    try:
        params = pika.URLParameters(base + (f"?{rest}" if rest else ""))
    except Exception as exc:  # pika raises plain ValueError / others on bad query args
        raise ConfigError(f"broker URL {mask_url(url)!r} is invalid: {exc}") from exc
    if parts.scheme == "amqps":
        _tls(params, url, parts.hostname, tls, raw="ssl_options" in query)
    elif tls:
        raise ConfigError(f"broker URL {mask_url(url)!r}: {', '.join(tls)} need amqps://")
    if "heartbeat" not in query:
        params.heartbeat = 30
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    params.blocked_connection_timeout = 60
    return params, queue


def _tls(params: pika.URLParameters, url: str, host: str, tls: dict[str, str], raw: bool) -> None:
    """Verify the broker's certificate against ``ssl_ca`` (else the system's CAs) and
    its name against the URL's host; ``ssl_cert``/``ssl_key`` present a client
    certificate. pika alone leaves the server name unset, so a plain ``amqps://``
    URL fails its own hostname check; pika's raw ``ssl_options`` still wins."""
    if raw:
        if params.ssl_options is not None and params.ssl_options.server_hostname is None:
            params.ssl_options = pika.SSLOptions(params.ssl_options.context, host)
        return
    try:
        context = ssl.create_default_context(cafile=tls.get("ssl_ca"))
        if "ssl_cert" in tls:
            context.load_cert_chain(tls["ssl_cert"], tls.get("ssl_key"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"broker URL {mask_url(url)!r}: TLS files: {exc}") from exc
    check = tls.get("ssl_check_hostname", "true").lower()
    if check not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"broker URL {mask_url(url)!r}: ssl_check_hostname={check!r}")
    context.check_hostname = check in ("true", "1", "yes")
    params.ssl_options = pika.SSLOptions(context, host)


@contextlib.contextmanager
def amqp_errors(url: str) -> Iterator[None]:
    """Map pika's errors to ServiceUnavailable, with the password masked.

    A login or vhost the broker explicitly refused (reply 403 or 530) is
    :class:`AccessRefused`, which nobody retries. pika also raises its
    "probable" authentication errors when the socket merely drops during the
    handshake, as it does while RabbitMQ restarts; those stay retryable.
    """
    try:
        yield
    except (
        pika.exceptions.ProbableAuthenticationError,
        pika.exceptions.AuthenticationError,
    ) as exc:
        what = "login refused (check the user and password)"
        raise _refusal(url, exc, what) from exc
    except pika.exceptions.ProbableAccessDeniedError as exc:
        what = "access to the vhost refused (check the vhost and the user's permissions)"
        raise _refusal(url, exc, what) from exc
    except (pika.exceptions.AMQPError, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        if "CERTIFICATE_VERIFY_FAILED" in detail:
            reason = _verify_reason(detail)
            raise AccessRefused("rabbitmq", f"{mask_url(url)}: TLS: {reason}") from exc
        raise ServiceUnavailable("rabbitmq", f"{mask_url(url)}: {detail}") from exc


def _verify_reason(detail: str) -> str:
    """``certificate verify failed: <why>`` out of pika's nested exception text."""
    start = detail.find("certificate verify failed")
    return detail[start:].split(" (_ssl", 1)[0] if start >= 0 else detail


def _refusal(url: str, exc: Exception, what: str) -> ServiceUnavailable:
    text = str(exc)
    if isinstance(exc, pika.exceptions.AuthenticationError) or any(
        marker in text for marker in ("ACCESS_REFUSED", "NOT_ALLOWED", "(403)", "(530)")
    ):
        return AccessRefused("rabbitmq", f"{mask_url(url)}: {what}")
    return ServiceUnavailable("rabbitmq", f"{mask_url(url)}: connection dropped during login")


def declare(channel: Any, queue: str) -> None:
    """Declare the work queue and its dead-letter queue (idempotent)."""
    dead = f"{queue}.dead"
    channel.queue_declare(queue=dead, durable=True)
    channel.queue_declare(
        queue=queue,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    )


class RabbitPublisher:
    """Publishes hints durably; one per thread (the master's).

    Hints go out in AMQP transactions of up to :data:`PUBLISH_BATCH`: RabbitMQ
    answers ``tx.commit`` once every message of the batch is routed and persisted
    (the guarantee of publisher confirms), in one round trip per batch where
    pika's blocking confirms cost one per hint. A returned (unroutable) hint
    raises, as an unconfirmed one would.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.params, self.queue = parse_broker_url(url)
        self._conn: Any = None
        self._channel: Any = None
        self._returned = 0

    def _connect(self) -> None:
        with amqp_errors(self.url):
            self._conn = pika.BlockingConnection(self.params)
            self._channel = self._conn.channel()
            self._channel.tx_select()
            self._channel.add_on_return_callback(self._on_return)
            declare(self._channel, self.queue)

    def _on_return(self, *_: Any) -> None:
        self._returned += 1

    def publish(self, hints: Sequence[Hint]) -> None:
        """Publish ``hints``, reconnecting once if the connection was lost.

        The one reconnect is not an outage backoff (that is the master's, in
        ``common/outage.py``): it cures a connection the broker dropped while
        the master was idle, and hints are idempotent. A second failure is
        raised as ServiceUnavailable for the master's outage policy.
        """
        if not hints:
            return
        try:
            self._publish(hints)
        except ServiceUnavailable:
            self.close()
            self._publish(hints)  # one reconnect; hints are idempotent

    def _publish(self, hints: Sequence[Hint]) -> None:
        if self._conn is None or not self._conn.is_open:
            self._connect()
        props = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json"
        )
        with amqp_errors(self.url):
            for first in range(0, len(hints), PUBLISH_BATCH):
                for hint in hints[first : first + PUBLISH_BATCH]:
                    self._channel.basic_publish(
                        exchange="",
                        routing_key=self.queue,
                        body=hint.encode(),
                        properties=props,
                        mandatory=True,
                    )
                self._channel.tx_commit()
            self._conn.process_data_events(time_limit=0)  # runs _on_return for returned hints
            if self._returned:
                returned, self._returned = self._returned, 0
                raise pika.exceptions.AMQPChannelError(f"{returned} hint(s) returned unroutable")

    def backlog(self) -> int | None:
        """Ready messages in the work queue (a passive declare on our channel)."""
        if self._conn is None or not self._conn.is_open:
            self._connect()
        with amqp_errors(self.url):
            return int(
                self._channel.queue_declare(queue=self.queue, passive=True).method.message_count
            )

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception):
                conn.close()


class RabbitConsumer:
    """A worker's consumer: it pulls one hint at a time (``basic.get``) when it has
    room for one, manual acks, DLQ on reject.

    Pulling rather than subscribing, so that no hint waits in the worker unacked:
    the worker acknowledges a hint as soon as its claim is decided (the claim lives
    in MySQL), and with a subscription the broker would push the next hint right
    then, to sit unacknowledged in the worker while its chunk runs -- past
    RabbitMQ's ``consumer_timeout`` (30 min by default) for a long chunk, when the
    broker closes the channel. A pull costs a round trip per hint, and hints are
    few (one per chunk). ``prefetch`` is kept for the interface; nothing is
    prefetched."""

    POLL_MIN = 0.02
    POLL_MAX = 0.5
    """Seconds between pulls of an empty queue (doubling while it stays empty)."""

    def __init__(self, url: str, prefetch: int) -> None:
        self.url = url
        self.params, self.queue = parse_broker_url(url)
        self.prefetch = prefetch
        self._generation = 0
        self._conn: Any = None
        self._channel: Any = None
        self._stopped = False
        self._pause = self.POLL_MIN
        self._lock = threading.Lock()

    def _connect(self) -> None:
        with amqp_errors(self.url):
            conn = pika.BlockingConnection(self.params)
            channel = conn.channel()
            declare(channel, self.queue)
            self._generation += 1
            self._conn, self._channel = conn, channel

    def _get(self) -> Delivery | None:
        method, _props, body = self._channel.basic_get(self.queue, auto_ack=False)
        if method is None:
            return None
        tag = (self._generation, method.delivery_tag)
        try:
            hint: Hint | None = decode_hint(body)
            error = None
        except MalformedMessage as exc:
            hint, error = None, str(exc)
        extra = {"redelivered": bool(method.redelivered)}
        return Delivery(hint=hint, tag=tag, body=body, error=error, extra=extra)

    def next_delivery(self, timeout: float) -> Delivery | None:
        if self._stopped:
            self.pump(timeout)
            return None
        if self._conn is None or not self._conn.is_open:
            self._connect()
        deadline = time.monotonic() + timeout
        with amqp_errors(self.url):
            while True:
                delivery = self._get()
                if delivery is not None:
                    self._pause = self.POLL_MIN
                    return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                # keeps heartbeats and queued acks flowing while the queue is empty
                self._conn.process_data_events(time_limit=min(self._pause, left))
                self._pause = min(self._pause * 2, self.POLL_MAX)

    def _threadsafe(self, delivery: Delivery, action: str) -> None:
        generation, tag = delivery.tag
        conn, channel = self._conn, self._channel
        if conn is None or generation != self._generation or not conn.is_open:
            return  # that connection is gone; the broker redelivers, the claim dedups
        if action == "ack":
            cb = functools.partial(channel.basic_ack, tag)
        else:
            cb = functools.partial(channel.basic_nack, tag, requeue=False)
        with contextlib.suppress(Exception):
            conn.add_callback_threadsafe(cb)

    def ack(self, delivery: Delivery) -> None:
        self._threadsafe(delivery, "ack")

    def reject(self, delivery: Delivery) -> None:
        self._threadsafe(delivery, "reject")

    def stop_consuming(self) -> None:
        """Take no more hints (nothing was prefetched, so nothing goes back)."""
        self._stopped = True

    def pump(self, timeout: float) -> None:
        """Keep I/O (heartbeats, queued acks) flowing while not taking deliveries."""
        if self._conn is not None and self._conn.is_open:
            with amqp_errors(self.url):
                self._conn.process_data_events(time_limit=timeout)

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception):
                conn.process_data_events(time_limit=0)
                conn.close()


def queue_depth(url: str) -> tuple[int, int]:
    """Messages ready in the work queue and in its dead-letter queue."""
    params, queue = parse_broker_url(url)
    with amqp_errors(url):
        conn = pika.BlockingConnection(params)
        try:
            ch = conn.channel()
            declare(ch, queue)
            work = ch.queue_declare(queue=queue, passive=True).method.message_count
            dead = ch.queue_declare(queue=f"{queue}.dead", passive=True).method.message_count
            return int(work), int(dead)
        finally:
            conn.close()
