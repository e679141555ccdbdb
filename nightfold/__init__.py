"""nightfold: nightly batch analytics over HBase.

The public API is what this module exports (``__all__``): the job API a user's
package needs (``from nightfold import Job, MapOutput, register``) and the one
error tree, so that users never import an internal path.

The errors are imported eagerly (one small module without imports). The job
API is loaded on first use (PEP 562 ``__getattr__``): the registry discovers
entry points through ``importlib.metadata``, which costs tens of milliseconds
that ``import nightfold`` (every process, every ``nightfold.common`` import)
should not pay.
"""

from __future__ import annotations

import importlib

from nightfold.common.errors import (
    AccessRefused,
    CellTooLarge,
    ChunkLost,
    ConfigError,
    CorruptPartial,
    IllegalTransition,
    MalformedMessage,
    NightfoldError,
    RunConflict,
    RunFailed,
    SchemaOutOfDate,
    ServiceUnavailable,
    StoreRejected,
    UnknownJob,
    VerifyMismatch,
)

TYPE_CHECKING = False  # not `from typing import ...`: typing alone costs ~2 ms to import
if TYPE_CHECKING:
    from typing import Any

    from nightfold.common.jobs import Job, MapOutput, register

__version__ = "0.1.0"

__all__ = [
    "AccessRefused",
    "CellTooLarge",
    "ChunkLost",
    "ConfigError",
    "CorruptPartial",
    "IllegalTransition",
    "Job",
    "MalformedMessage",
    "MapOutput",
    "NightfoldError",
    "RunConflict",
    "RunFailed",
    "SchemaOutOfDate",
    "ServiceUnavailable",
    "StoreRejected",
    "UnknownJob",
    "VerifyMismatch",
    "__version__",
    "register",
]

_LAZY = {
    "Job": "nightfold.common.jobs",
    "MapOutput": "nightfold.common.jobs",
    "register": "nightfold.common.jobs",
}
"""Public name -> the module it lives in, imported on first access."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
