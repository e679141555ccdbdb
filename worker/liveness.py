"""The worker process's own heartbeat: a daemon thread that records, every
``worker_heartbeat_seconds``, that the process is alive (``workers.last_seen_at``,
on the database's clock) and which chunk it is working on.

It lives apart from the main loop because that loop can block for a long time
(a broker reconnect with backoff) while the process is perfectly alive; the
master takes a claim back once its worker has not been seen for
``worker_dead_seconds``, so a beat must not wait on anything but the database.
A killed process stops beating at once; a frozen one (SIGSTOP) too, and is
fenced out when it wakes.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from nightfold.common.db import workers as worker_repo
from nightfold.common.logs import fields

log = logging.getLogger(__name__)


class CurrentChunks:
    """Which chunk each processing thread holds, safe to read from another thread.

    Processing threads register and update their entry while the heartbeat
    thread reads: a plain dict iterated there could raise "dictionary changed
    size during iteration", hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_thread: dict[int, int | None] = {}

    def set(self, chunk_id: int | None) -> None:
        """Record the calling thread's chunk (None: idle)."""
        ident = threading.get_ident()
        with self._lock:
            self._by_thread[ident] = chunk_id

    def forget(self) -> None:
        """The calling thread is leaving."""
        with self._lock:
            self._by_thread.pop(threading.get_ident(), None)

    def any(self) -> int | None:
        """One chunk being worked on, or None (the ``workers`` row has one column)."""
        with self._lock:
            return next((c for c in self._by_thread.values() if c is not None), None)


class Liveness:
    """Beats for one worker process on a daemon thread until ``stop``."""

    def __init__(
        self, engine: Engine, worker_id: str, current: CurrentChunks, interval: float
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.current = current
        self.interval = interval
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="nightfold-liveness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (before the worker records that it stopped)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(1.0, self.interval))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat()
            self._stop.wait(self.interval)

    def beat(self) -> bool:
        """Record one heartbeat; False (logged once per outage) when the database
        cannot be reached: the next beat tries again."""
        try:
            with self.engine.begin() as conn:
                worker_repo.seen(conn, self.worker_id, self.current.any())
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "worker %s: could not record heartbeat: %s",
                    self.worker_id,
                    exc,
                    extra=fields(worker=self.worker_id),
                )
            self._failing = True
            return False
        if self._failing:
            log.info(
                "worker %s: heartbeat recorded again",
                self.worker_id,
                extra=fields(worker=self.worker_id),
            )
        self._failing = False
        return True
