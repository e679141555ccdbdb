"""The worker process, assembled: registration and liveness, signals, the
chunk processor and the consumer loop, with metrics and logs as hooks.

Each part lives in its own module so it can be read and tested alone:
:mod:`~nightfold.worker.processor` (one chunk, every exit path),
:mod:`~nightfold.worker.consumer` (deliveries, slots, acks, stopping),
:mod:`~nightfold.worker.shutdown` (signals), :mod:`~nightfold.worker.hooks`
(metrics and log lines), :mod:`~nightfold.worker.liveness` (the process beat).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from nightfold.common.config import Settings
from nightfold.common.db import workers as worker_repo
from nightfold.common.errors import ServiceUnavailable
from nightfold.common.identity import new_identity
from nightfold.common.store.base import Store
from nightfold.common.transport import Consumer
from nightfold.worker.consumer import ConsumerLoop
from nightfold.worker.hooks import FanOut, Hooks, LogHooks, MetricsHooks
from nightfold.worker.liveness import CurrentChunks, Liveness
from nightfold.worker.processor import ChunkProcessor
from nightfold.worker.shutdown import Shutdown

log = logging.getLogger(__name__)


class Worker:
    """One worker process."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        consumer_factory: Callable[[], Consumer],
        store_factory: Callable[[], Store],
        *,
        concurrency: int = 1,
        max_chunks: int | None = None,
        hooks: Sequence[Hooks] = (),
    ) -> None:
        """``hooks`` are heard besides the metrics and the log lines."""
        self.settings = settings
        self.engine = engine
        self.me = new_identity()
        self.hooks = FanOut([MetricsHooks(), LogHooks(), *hooks])
        self.current = CurrentChunks()
        self.processor = ChunkProcessor(
            settings, engine, self.me, self.hooks, on_claim=self.current.set
        )
        self.loop = ConsumerLoop(
            settings,
            self.processor,
            consumer_factory,
            store_factory,
            self.hooks,
            concurrency=concurrency,
            max_chunks=max_chunks,
            current=self.current,
        )
        self.shutdown = Shutdown(self.me, self.request_stop)

    @property
    def chunks_done(self) -> int:
        return self.loop.chunks_done

    @property
    def fatal(self) -> ServiceUnavailable | None:
        """Why the worker gave up (refused, or an outage past the deadline), if it did."""
        return self.loop.fatal

    def install_signal_handlers(self) -> None:
        self.shutdown.install()

    def request_stop(self) -> None:
        self.loop.request_stop()

    def run(self) -> int:
        """0 once stopped; raises the fatal ServiceUnavailable if the worker gave up."""
        with self.engine.begin() as conn:
            worker_repo.register(conn, self.me, socket.gethostname(), os.getpid())
        liveness = Liveness(
            self.engine, self.me, self.current, self.settings.worker_heartbeat_seconds
        )
        liveness.start()
        self.hooks.started(self.me, self.loop.concurrency)
        try:
            self.loop.run()
            return 0
        finally:
            liveness.stop()
            try:
                with self.engine.begin() as conn:
                    worker_repo.stopped(conn, self.me)
            except Exception:
                log.debug("could not record worker stop", exc_info=True)
            self.hooks.stopped(self.me, self.chunks_done)
