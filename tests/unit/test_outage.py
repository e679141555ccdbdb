"""The retry policy of the long-running loops (common/outage.py) and the error
mapping that decides what is retried: refusals never, outages until the deadline."""

from __future__ import annotations

import logging

import pika.exceptions
import pytest

from nightfold.common.errors import AccessRefused, ServiceUnavailable
from nightfold.common.outage import MAX_BACKOFF, Outage
from nightfold.common.transport.rabbitmq import amqp_errors


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


LOG = logging.getLogger("nightfold.test")
DOWN = ServiceUnavailable("rabbitmq", "amqp://u:***@h/v: connection refused")


def test_backoff_doubles_up_to_the_cap_then_gives_up_after_the_deadline() -> None:
    clock = Clock()
    outage = Outage(30, LOG, "worker w", clock=clock)
    waits = []
    with pytest.raises(ServiceUnavailable, match=r"gave up after 30s"):
        while True:
            waits.append(outage.failed(DOWN))
            clock.now += waits[-1]
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(waits) == MAX_BACKOFF
    assert 30 - MAX_BACKOFF <= sum(waits) <= 30 + MAX_BACKOFF


def test_recovery_resets_the_outage_and_reports_its_length() -> None:
    clock = Clock()
    outage = Outage(30, LOG, "worker w", clock=clock)
    assert outage.recovered() is None
    outage.failed(DOWN)
    clock.now += 25
    outage.failed(DOWN)
    assert outage.recovered() == 25
    clock.now += 25  # a new outage starts its own deadline and backoff
    assert outage.failed(DOWN) == 0.5
    assert not outage.recovered() and not outage.ongoing


def test_a_refusal_is_never_retried() -> None:
    refused = AccessRefused("database", "mysql+pymysql://u:***@h/db: (1045) Access denied")
    with pytest.raises(AccessRefused):
        Outage(600, LOG, "worker w", clock=Clock()).failed(refused)


URL = "amqp://nightfold:hunter2@h:5672/v"


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (
            pika.exceptions.ProbableAuthenticationError(
                "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused'"
            ),
            AccessRefused,
            "login refused",
        ),
        (
            pika.exceptions.ProbableAccessDeniedError(
                "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost v not found'"
            ),
            AccessRefused,
            "vhost refused",
        ),
        # the socket dropped mid-handshake (a broker restarting): retryable
        (
            pika.exceptions.ProbableAuthenticationError("StreamLostError: Transport indicated EOF"),
            ServiceUnavailable,
            "dropped during login",
        ),
        (pika.exceptions.AMQPConnectionError("connection refused"), ServiceUnavailable, "refused"),
    ],
)
def test_amqp_errors_tell_refusals_from_outages(
    raised: Exception, expected: type[Exception], text: str
) -> None:
    with pytest.raises(ServiceUnavailable) as caught, amqp_errors(URL):
        raise raised
    assert type(caught.value) is expected
    assert text in str(caught.value) and "hunter2" not in str(caught.value)
