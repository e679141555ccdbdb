"""The worker's signal handling and its hook fan-out, in process."""

from __future__ import annotations

import signal

import pytest

from nightfold.worker import shutdown as shutdown_module
from nightfold.worker.hooks import FanOut, Hooks
from nightfold.worker.shutdown import Shutdown


def test_first_signal_stops_taking_work_second_exits_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stops: list[int] = []
    exits: list[int] = []
    monkeypatch.setattr(shutdown_module.os, "_exit", exits.append)
    sd = Shutdown("w1", lambda: stops.append(1))
    sd.on_signal(signal.SIGTERM, None)
    assert (stops, exits) == ([1], [])
    sd.on_signal(signal.SIGINT, None)
    assert (stops, exits) == ([1], [1])


def test_fan_out_calls_every_listener_in_order() -> None:
    heard: list[str] = []

    class One(Hooks):
        def started(self, worker: str, concurrency: int) -> None:
            heard.append(f"one {worker} {concurrency}")

    class Two(Hooks):
        def started(self, worker: str, concurrency: int) -> None:
            heard.append(f"two {worker} {concurrency}")

    hooks = FanOut([One(), Hooks(), Two()])
    hooks.started("w1", 3)
    hooks.stopped("w1", 0)  # nobody overrides it: no-op everywhere
    assert heard == ["one w1 3", "two w1 3"]
