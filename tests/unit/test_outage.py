"""The one outage policy (common/outage.py), as the long-running loops use it
(Outage) and as single calls use it (OutagePolicy.call, through tenacity), and
the error mapping that decides what is retried: refusals never, outages until
the deadline."""

from __future__ import annotations

import logging

import pika.exceptions
import pytest
from sqlalchemy import text

from nightfold.common.config import Settings
from nightfold.common.db.engine import make_engine, retrying
from nightfold.common.errors import AccessRefused, ServiceUnavailable
from nightfold.common.outage import FIRST_BACKOFF, MAX_BACKOFF, Outage, OutagePolicy
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
    assert waits[:4] == [FIRST_BACKOFF * 2**i for i in range(4)]
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
    assert outage.failed(DOWN) == FIRST_BACKOFF
    assert not outage.recovered() and not outage.ongoing


def test_a_refusal_is_never_retried() -> None:
    refused = AccessRefused("database", "mysql+pymysql://u:***@h/db: (1045) Access denied")
    with pytest.raises(AccessRefused):
        Outage(600, LOG, "worker w", clock=Clock()).failed(refused)


def test_the_schedule_doubles_from_the_first_wait_up_to_the_cap() -> None:
    policy = OutagePolicy(deadline=120, initial=0.2, maximum=5)
    assert [policy.backoff(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]
    assert policy.backoff(10_000) == 5  # no overflow however long the outage


def test_the_policy_comes_from_the_settings() -> None:
    policy = OutagePolicy.from_settings(Settings(connect_deadline_seconds=42))
    assert policy == OutagePolicy(42, FIRST_BACKOFF, MAX_BACKOFF)
    assert Outage(42, LOG, "w").policy == policy


class Flaky:
    """Fails with ``error`` ``failures`` times, then returns "ok"."""

    def __init__(self, failures: int, error: Exception = DOWN) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_a_call_retries_on_the_same_schedule_as_the_loops(caplog: pytest.LogCaptureFixture) -> None:
    # Given a call that fails four times, then gets through
    policy = OutagePolicy(deadline=3600)
    flaky, slept = Flaky(4), []
    # When it is run under the policy
    with caplog.at_level(logging.WARNING):
        assert policy.call(flaky, log=LOG, what="worker w: complete", sleep=slept.append) == "ok"
    # Then it waited exactly as a loop's Outage would have, and said so each time
    loop = Outage(policy, LOG, "w", clock=Clock())
    assert slept == [loop.failed(DOWN) for _ in range(4)]
    assert flaky.calls == 5
    assert "worker w: complete: rabbitmq unavailable" in caplog.text
    assert f"retrying in {FIRST_BACKOFF:.1f}s" in caplog.text


def test_a_call_gives_up_at_the_deadline_saying_so() -> None:
    # a zero deadline is over when the first attempt fails: no retry, no sleep
    flaky, slept = Flaky(10), []
    with pytest.raises(ServiceUnavailable, match=r"rabbitmq unavailable: .*gave up after 0s"):
        OutagePolicy(deadline=0).call(flaky, log=LOG, what="w", sleep=slept.append)
    assert flaky.calls == 1 and slept == []


@pytest.mark.parametrize(
    "error",
    [
        AccessRefused("database", "mysql+pymysql://u:***@h/db: (1045) Access denied"),
        ValueError("a bug, not an outage"),
    ],
)
def test_a_call_does_not_retry_a_refusal_or_a_bug(error: Exception) -> None:
    flaky, slept = Flaky(10, error), []
    with pytest.raises(type(error)) as raised:
        OutagePolicy(deadline=3600).call(flaky, log=LOG, what="w", sleep=slept.append)
    assert raised.value is error and flaky.calls == 1 and slept == []


def test_the_database_seam_rides_the_policy_and_maps_errors() -> None:
    # a sqlite file that cannot be opened is an outage of the database: retried to
    # the deadline, then one masked line naming it
    url = "sqlite:////nonexistent-dir/db.sqlite"
    engine = make_engine(url)

    def open_db() -> None:
        with engine.connect() as conn:
            conn.execute(text("select 1"))

    with pytest.raises(ServiceUnavailable, match=r"database unavailable: .*gave up after 0s"):
        retrying(url, open_db, deadline=0, what="t")
    engine.dispose()


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
