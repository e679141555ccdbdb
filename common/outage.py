"""The one outage policy: how long and how often nightfold retries a backing
service that is down, for every caller that rides an outage out.

:class:`OutagePolicy` is the policy: a backoff schedule and a deadline
(``connect_deadline_seconds``), built once from the settings. It serves two
shapes of caller:

- **loop-style**: the master's tick loop and the worker's consumer loop own
  their loop (they reconnect, release slots, watch for SIGTERM between tries),
  so they keep an :class:`Outage` and call :meth:`Outage.failed` /
  :meth:`Outage.recovered`;
- **call-style**: one short transaction that must get through a database
  restart (complete, fail, release, a master's acquire) is run by
  :meth:`OutagePolicy.call`, which hands the same schedule and deadline to
  tenacity.

Both log ``who: error; retrying in Ns``, never retry :class:`AccessRefused`
(waiting does not fix a password), and give up with a ServiceUnavailable whose
message ends ``(gave up after Ns)`` once the outage has lasted the deadline.

The schedule is 0.2 s doubling to at most 5 s. Short first waits because the
common failures are short (a deadlock or lock wait the database rolled back, a
connection the pool had to replace); a 5 s cap because after a restart a
process notices the service is back within 5 s, while one attempt per 5 s per
process is no load on a service coming up; and it overshoots the deadline by at
most 5 s. (The loops used 0.5 s to 10 s by hand, the database calls 0.2 s to 5 s
with tenacity: the faster one is kept.)

Not this policy, on purpose: the HBase store and the RabbitMQ publisher each
reconnect *once*, at once, on a transport error (``common/store/hbase.py``
``_call``, ``common/transport/rabbitmq.py`` ``RabbitPublisher.publish``). That
cures a socket the server closed while it was idle -- the usual case, and no
outage -- without a caller seeing an error; when the second try fails too they
raise ServiceUnavailable, and the outage is the caller's policy's business. The
worker's liveness thread likewise beats on its own fixed period: a missed beat
is not retried sooner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import tenacity

from nightfold.common.errors import AccessRefused, ServiceUnavailable

if TYPE_CHECKING:
    from nightfold.common.config import Settings

FIRST_BACKOFF = 0.2
MAX_BACKOFF = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class OutagePolicy:
    """Backoff ``initial`` seconds doubling up to ``maximum``; give up once an
    outage has lasted ``deadline`` seconds."""

    deadline: float
    initial: float = FIRST_BACKOFF
    maximum: float = MAX_BACKOFF

    @classmethod
    def from_settings(cls, settings: Settings) -> OutagePolicy:
        """The policy of every process: the schedule above, the configured deadline."""
        return cls(settings.connect_deadline_seconds)

    def backoff(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt in a row (1-based)."""
        if failures >= 64:  # 2**63 times anything is past any cap
            return self.maximum
        return min(self.initial * 2 ** max(failures - 1, 0), self.maximum)

    def expired(self, seconds: float) -> bool:
        """Whether an outage that has lasted ``seconds`` is past the deadline."""
        return seconds >= self.deadline

    @staticmethod
    def retryable(exc: BaseException) -> bool:
        """An outage (retried), not a refusal or any other error (raised at once)."""
        return isinstance(exc, ServiceUnavailable) and not isinstance(exc, AccessRefused)

    def gave_up(self, exc: ServiceUnavailable) -> ServiceUnavailable:
        """The error that ends an outage past the deadline: the last one, saying so."""
        return ServiceUnavailable(exc.service, f"{exc.detail} (gave up after {self.deadline:.0f}s)")

    def call(
        self,
        fn: Callable[[], T],
        *,
        log: logging.Logger,
        what: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Run ``fn`` until it returns, retrying a ServiceUnavailable on this
        schedule; the outage is measured from the first attempt. Raises a
        refusal or any other error at once, and :meth:`gave_up` at the deadline.
        """

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            wait = rs.next_action.sleep if rs.next_action else 0.0
            exc = rs.outcome.exception() if rs.outcome else None
            log.warning("%s: %s; retrying in %.1fs", what, exc, wait)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self.retryable),
            wait=lambda rs: self.backoff(rs.attempt_number),
            stop=lambda rs: self.expired(rs.seconds_since_start or 0.0),
            before_sleep=before_sleep,
            sleep=sleep,
        )
        try:
            return retrying(fn)
        except tenacity.RetryError as exc:
            last = exc.last_attempt.exception()
            assert isinstance(last, ServiceUnavailable)
            raise self.gave_up(last) from last


class Outage:
    """The current outage of a loop-style caller (none until :meth:`failed`),
    under ``policy`` (or the default policy with that deadline), logged to
    ``log`` as ``who: error; retrying in Ns`` and ``who: services back``."""

    def __init__(
        self,
        policy: OutagePolicy | float,
        log: logging.Logger,
        who: str,
        extra: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy if isinstance(policy, OutagePolicy) else OutagePolicy(policy)
        self._log, self._who, self._extra = log, who, extra or {}
        self._clock = clock
        self._since: float | None = None
        self._failures = 0

    @property
    def deadline(self) -> float:
        return self.policy.deadline

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: ServiceUnavailable) -> float:
        """Record a failed attempt; the seconds to wait before the next one.

        Raises ``exc`` again when it is a refusal (retrying cannot help) and a
        ServiceUnavailable naming the deadline once the outage has outlasted it
        (measured from its first failure).
        """
        if not self.policy.retryable(exc):
            raise exc
        now = self._clock()
        if self._since is None:
            self._since = now
        if self.policy.expired(now - self._since):
            raise self.policy.gave_up(exc) from exc
        self._failures += 1
        wait = self.policy.backoff(self._failures)
        self._log.warning("%s: %s; retrying in %.1fs", self._who, exc, wait, extra=self._extra)
        return wait

    def recovered(self) -> float | None:
        """Record a successful attempt; how long the outage lasted, if there was one."""
        since, self._since, self._failures = self._since, None, 0
        if since is None:
            return None
        lasted = self._clock() - since
        self._log.info("%s: services back after %.1fs", self._who, lasted, extra=self._extra)
        return lasted
