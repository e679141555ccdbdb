"""Fan-out for the master's and the worker's hook interfaces (dramatiq's
middleware list, reduced to notifications): one object that forwards every
event method to several listeners, in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class FanOutMixin:
    """Mixed in before a hooks interface: ``FanOut(FanOutMixin, Hooks)``.

    Every public attribute is looked up on each listener and called in turn,
    so a new event method needs no change here.
    """

    def __init__(self, hooks: Sequence[Any]) -> None:
        self.hooks = list(hooks)

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_") or name == "hooks":
            return object.__getattribute__(self, name)
        listeners = [getattr(h, name) for h in object.__getattribute__(self, "hooks")]

        def call(*args: object) -> None:
            for listener in listeners:
                listener(*args)

        return call
