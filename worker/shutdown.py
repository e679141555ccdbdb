"""Signals, dramatiq's way: the first SIGTERM (or SIGINT) stops taking work and
lets current chunks finish within the grace period; a second exits at once."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType

from nightfold.common.logs import fields

log = logging.getLogger("nightfold.worker.runner")


class Shutdown:
    """Turns signals into ``stop()`` once, then into an immediate exit."""

    def __init__(self, who: str, stop: Callable[[], None]) -> None:
        self.who = who
        self.stop = stop
        self.signals = 0

    def install(self) -> None:
        """Main thread only (Python delivers signals there)."""
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            log.warning("worker %s: second signal, exiting now", self.who, extra=self._fields())
            os._exit(1)
            return  # (only reached where os._exit is replaced, in tests)
        log.info(
            "worker %s: %s received, finishing current chunks",
            self.who,
            signal.Signals(signum).name,
            extra=self._fields(),
        )
        self.stop()

    def _fields(self) -> dict[str, object]:
        return fields(worker=self.who)
