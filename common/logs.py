"""Logging setup: one line per event, human by default, JSON for log shippers.

Event lines carry the ids they are about as ``extra`` fields, named in
:data:`FIELDS` (``run``, ``stage``, ``chunk``, ``attempt``, ``worker``,
``master``)::

    log.info("worker %s: claimed %s", me, claim.label, extra=claim_fields(claim, me))

The JSON format (``--log-format json``) emits them as top-level keys, the human
format appends them as ``key=value``, so a log shipper can filter on
``chunk=1234`` without parsing the message. :func:`fields` builds the dict from
keywords (dropping ``None``); :func:`claim_fields` from a worker's claim.

No secrets: every line -- message, exception text, fields -- goes through
:func:`nightfold.common.urls.mask_url`, the one masker, which hides the
password of any URL in it (``mysql+pymysql://user:***@host``), whoever logged it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Protocol

from nightfold.common.urls import mask_url

FIELDS = ("run", "stage", "chunk", "attempt", "worker", "master")
"""The ids an event line may carry, in the order the human format appends them."""

_BARE = re.compile(r"^[^\s=\"']+$")


def fields(
    *,
    run: str | None = None,
    stage: str | None = None,
    chunk: int | None = None,
    attempt: int | None = None,
    worker: str | None = None,
    master: str | None = None,
) -> dict[str, Any]:
    """``extra=`` for an event line: the given ids that are not ``None``.

    Keyword-only and typed, so a misspelt id is a type error, not a field that
    silently never appears.
    """
    ids = {
        "run": run,
        "stage": stage,
        "chunk": chunk,
        "attempt": attempt,
        "worker": worker,
        "master": master,
    }
    return {k: _plain(v) for k, v in ids.items() if v is not None}


class _RunLike(Protocol):
    @property
    def label(self) -> str: ...


class ClaimLike(Protocol):
    """What :func:`claim_fields` reads (``nightfold.common.db.chunks.Claim``)."""

    @property
    def chunk_id(self) -> int: ...
    @property
    def run(self) -> _RunLike: ...
    @property
    def stage(self) -> str: ...
    @property
    def attempt(self) -> int: ...


def claim_fields(claim: ClaimLike, worker: str) -> dict[str, Any]:
    """The ids of a worker's event about one claimed chunk."""
    return fields(
        run=claim.run.label,
        stage=claim.stage,
        chunk=claim.chunk_id,
        attempt=claim.attempt,
        worker=worker,
    )


def _plain(value: Any) -> Any:
    """Enums by value; ints stay ints (JSON numbers), anything else a string."""
    value = getattr(value, "value", value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return value


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The :data:`FIELDS` set on a record (through ``extra=``), in order, masked."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            value = _plain(value)
            out[name] = mask_url(value) if isinstance(value, str) else value
    return out


def _human_value(value: Any) -> str:
    text = str(value)
    return text if _BARE.match(text) else json.dumps(text)


class HumanFormatter(logging.Formatter):
    """``time LEVEL logger[pid]: message key=value ...`` (then any traceback)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = record_fields(record)
        if extra:
            line += " " + " ".join(f"{k}={_human_value(v)}" for k, v in extra.items())
        return line

    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``pid``, ``msg``,
    the record's :data:`FIELDS` as top-level keys, and ``exc`` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": mask_url(record.getMessage()),
        }
        data.update(record_fields(record))
        if record.exc_info:
            data["exc"] = mask_url(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc"] = mask_url(record.exc_text)
        return json.dumps(data, sort_keys=True)


class LibraryTracebacks(logging.Filter):
    """Turns a library's logged traceback into one line: ``message: Type: text``.

    pika and SQLAlchemy log the connection errors they then raise to us with their
    full traceback (``Error in _create_connection()``; pika even formats the stack
    into the message: ``... Caller's stack:``), so one RabbitMQ restart filled a
    worker's log with stack frames for an outage it rides out by design. Our
    handlers report those errors already; the library's copy keeps the first line
    of its message and the exception's text, not its frames. ``--log-level
    debug`` keeps them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("nightfold"):
            return True
        message = record.getMessage()
        if not record.exc_info and "\n" not in message:
            return True
        line = message.split("\n", 1)[0].removesuffix("Caller's stack:").rstrip(" ;:")
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            line += f": {type(exc).__name__}" + (f": {detail}" if detail else "")
        record.msg, record.args = line, None
        record.exc_info = None
        record.exc_text = None
        return True


def setup_logging(level: str = "INFO", fmt: str = "human") -> None:
    """Log to stderr in ``fmt``; at DEBUG, libraries' stack frames are kept."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    if level.upper() != "DEBUG":
        handler.addFilter(LibraryTracebacks())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pika", "alembic", "thriftpy2", "happybase"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
