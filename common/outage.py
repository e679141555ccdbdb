"""One continuous outage of a backing service, as the long-running loops ride it out.

The master's tick loop and the worker's consumer loop both retry a failed step
with exponential backoff and give up once the services have been unavailable
for ``connect_deadline_seconds`` in a row; this is that policy, in one place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nightfold.common.errors import AccessRefused, ServiceUnavailable

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0


class Outage:
    """Backoff and deadline of the current outage (none until :meth:`failed`),
    logged to ``log`` as ``who: error; retrying in Ns`` and ``who: services back``."""

    def __init__(
        self,
        deadline: float,
        log: logging.Logger,
        who: str,
        extra: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deadline = deadline
        self._log, self._who, self._extra = log, who, extra or {}
        self._clock = clock
        self._since: float | None = None
        self._backoff = FIRST_BACKOFF

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: ServiceUnavailable) -> float:
        """Record a failed attempt; the seconds to wait before the next one.

        Raises ``exc`` again when it is a refusal (retrying cannot help) and a
        ServiceUnavailable naming the deadline once the outage has outlasted it.
        """
        if isinstance(exc, AccessRefused):
            raise exc
        now = self._clock()
        if self._since is None:
            self._since = now
        if now - self._since > self.deadline:
            raise ServiceUnavailable(
                exc.service, f"{exc.detail} (gave up after {self.deadline:.0f}s)"
            ) from exc
        wait, self._backoff = self._backoff, min(self._backoff * 2, MAX_BACKOFF)
        self._log.warning("%s: %s; retrying in %.1fs", self._who, exc, wait, extra=self._extra)
        return wait

    def recovered(self) -> float | None:
        """Record a successful attempt; how long the outage lasted, if there was one."""
        since, self._since, self._backoff = self._since, None, FIRST_BACKOFF
        if since is None:
            return None
        lasted = self._clock() - since
        self._log.info("%s: services back after %.1fs", self._who, lasted, extra=self._extra)
        return lasted
