"""Cleanup that may have to ride out a service restart.

Tests clean up once and fail loudly; the benchmarks run for many minutes on a
shared machine whose services may restart meanwhile, so they try again and
only log what they could not remove (their result stands either way).
"""

from __future__ import annotations

import time
from collections.abc import Callable

RETRY_PAUSE_S = 3.0
"""Between attempts: about as long as a shared service takes to come back."""


def clean_up(
    action: Callable[[], None],
    what: str,
    *,
    attempts: int = 1,
    say: Callable[[str], None] | None = None,
) -> None:
    """Run ``action`` up to ``attempts`` times; after the last failure raise, or,
    when ``say`` is given, tell it ``could not <what>: <error>`` instead."""
    for attempt in range(1, attempts + 1):
        try:
            action()
            return
        except Exception as exc:
            if attempt < attempts:
                time.sleep(RETRY_PAUSE_S)
            elif say is None:
                raise
            else:
                say(f"could not {what}: {exc}")
