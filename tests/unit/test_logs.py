"""The log formatters: event ids as top-level JSON keys or appended ``key=value``,
one line per event, and no URL password in any line."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from nightfold.common.db.chunks import Claim
from nightfold.common.db.runs import RunInfo, RunParams
from nightfold.common.keys import KeyRange
from nightfold.common.logs import (
    FIELDS,
    HumanFormatter,
    JsonFormatter,
    claim_fields,
    fields,
    setup_logging,
)
from nightfold.common.states import RunState, Stage

SECRET = "s3cr3t-Pa55"
DB_URL = f"mysql+pymysql://nightfold:{SECRET}@db:3306/nightfold"


def record(
    msg: str, *args: object, extra: dict[str, object] | None = None, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"cannot reach {DB_URL}")
        except RuntimeError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("nightfold.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in (extra or {}).items():
        setattr(rec, key, value)  # what logging does with extra=
    return rec


def a_claim() -> Claim:
    run = RunInfo(
        id=7,
        job="merchant_daily",
        day=dt.date(2026, 11, 22),
        generation=2,
        state=RunState.MAPPING,
        owner="m:1:x",
        cancel_requested=False,
        params=RunParams(),
        error=None,
    )
    return Claim(
        chunk_id=1234,
        run=run,
        stage=Stage.MAP,
        idx=3,
        key_range=KeyRange(b"a", b"b"),
        owner="host:42:abc",
        attempt=2,
    )


# -- fields --------------------------------------------------------------------------------


def test_fields_drop_none_and_use_enum_values() -> None:
    # Given ids, some missing, one an enum
    got = fields(run="j/2026-11-22#1", stage=Stage.REDUCE, chunk=9, worker=None)
    # Then only the given ones remain, as plain values
    assert got == {"run": "j/2026-11-22#1", "stage": "reduce", "chunk": 9}
    assert type(got["stage"]) is str


def test_fields_reject_an_unknown_name() -> None:
    with pytest.raises(TypeError, match="chunk_id"):
        fields(chunk_id=1)  # type: ignore[call-arg]


def test_fields_cover_every_field_name() -> None:
    import inspect

    assert tuple(inspect.signature(fields).parameters) == FIELDS


def test_claim_fields_name_every_id_of_a_claim() -> None:
    assert claim_fields(a_claim(), "host:42:abc") == {
        "run": "merchant_daily/2026-11-22#2",
        "stage": "map",
        "chunk": 1234,
        "attempt": 2,
        "worker": "host:42:abc",
    }


# -- JSON ----------------------------------------------------------------------------------


def test_json_has_the_ids_as_top_level_keys() -> None:
    # Given an event line with ids
    rec = record("worker %s: claimed %s", "w1", "c1", extra=claim_fields(a_claim(), "w1"))
    # When formatted as JSON
    data = json.loads(JsonFormatter().format(rec))
    # Then the message is unchanged and each id is its own key, ints as numbers
    assert data["msg"] == "worker w1: claimed c1"
    assert data["run"] == "merchant_daily/2026-11-22#2"
    assert data["stage"] == "map"
    assert data["chunk"] == 1234 and data["attempt"] == 2
    assert data["worker"] == "w1"
    assert {"ts", "level", "logger", "pid"} <= set(data)
    assert data["level"] == "warning" and data["ts"].endswith("Z")


def test_json_without_ids_has_no_id_keys() -> None:
    data = json.loads(JsonFormatter().format(record("plain")))
    assert not set(FIELDS) & set(data)


def test_json_is_one_line_even_with_a_traceback() -> None:
    line = JsonFormatter().format(record("boom", exc=True))
    assert "\n" not in line
    assert "RuntimeError" in json.loads(line)["exc"]


# -- human ---------------------------------------------------------------------------------


def test_human_appends_key_value_in_field_order() -> None:
    rec = record(
        "run %s: chunk %d lease expired",
        "r",
        5,
        extra=fields(master="m:1:x", chunk=5, run="merchant_daily/2026-11-22#1", stage="map"),
    )
    line = HumanFormatter().format(rec)
    assert line.endswith(
        "run r: chunk 5 lease expired"
        " run=merchant_daily/2026-11-22#1 stage=map chunk=5 master=m:1:x"
    )
    assert " WARNING nightfold.test[" in line


def test_human_quotes_values_with_spaces() -> None:
    line = HumanFormatter().format(record("x", extra={"worker": "a b"}))
    assert line.endswith('x worker="a b"')


def test_human_puts_the_ids_on_the_first_line_before_a_traceback() -> None:
    text = HumanFormatter().format(record("failed", extra=fields(chunk=3), exc=True))
    first, *rest = text.splitlines()
    assert first.endswith("failed chunk=3")
    assert rest and rest[0].startswith("Traceback")


# -- no secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("formatter", [HumanFormatter(), JsonFormatter()], ids=["human", "json"])
def test_no_password_in_any_part_of_a_line(formatter: logging.Formatter) -> None:
    # Given a message, an argument, an id and a traceback that all carry a password
    rec = record("settings: %s", {"database_url": DB_URL}, extra={"worker": DB_URL}, exc=True)
    # When formatted
    text = formatter.format(rec)
    # Then the password appears nowhere, the masked URL does
    assert SECRET not in text
    assert "nightfold:***@db" in text


def test_setup_logging_json_writes_one_object_per_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("DEBUG", "json")
        logging.getLogger("nightfold.test").debug(
            "connecting to %s", DB_URL, extra=fields(worker="w")
        )
        setup_logging("INFO", "human")
        logging.getLogger("nightfold.test").info("hello", extra=fields(run="r"))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["worker"] == "w" and first["level"] == "debug"
    assert SECRET not in lines[0]
    assert lines[1].endswith("hello run=r")


@dataclass
class _Run:
    label: str


@dataclass
class _Claim:
    chunk_id: int
    run: _Run
    stage: str
    attempt: int


def test_claim_fields_take_any_claim_shaped_object() -> None:
    got = claim_fields(_Claim(1, _Run("j/d#1"), "reduce", 1), "w")
    assert got == {"run": "j/d#1", "stage": "reduce", "chunk": 1, "attempt": 1, "worker": "w"}


def _captured(level: str, emit: Callable[[], None]) -> list[str]:
    """The lines ``emit`` logs through :func:`setup_logging` at ``level``."""
    import io

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    try:
        setup_logging(level, "human")
        root.handlers[0].setStream(out)  # type: ignore[attr-defined]
        emit()
    finally:
        root.handlers[:], lvl = saved
        root.setLevel(lvl)
    return out.getvalue().splitlines()


def _log_library_error(logger_name: str, level: str) -> list[str]:
    """Log an exception the way pika does (``LOGGER.exception``) and return stderr lines."""

    def emit() -> None:
        try:
            raise ConnectionResetError(104, f"Connection reset by peer {DB_URL}")
        except ConnectionResetError:
            logging.getLogger(logger_name).exception("Error in _create_connection().")

    return _captured(level, emit)


def test_library_tracebacks_become_one_line() -> None:
    # Given pika logging a connection error with its traceback, at INFO
    lines = _log_library_error("pika.adapters.blocking_connection", "INFO")
    # Then it is one line with the exception's type and text, password masked
    assert len(lines) == 1
    assert "Error in _create_connection().: ConnectionResetError: [Errno 104]" in lines[0]
    assert SECRET not in lines[0]


def test_a_stack_formatted_into_the_message_is_cut() -> None:
    # pika's _produce() failure formats the traceback into the message itself
    def emit() -> None:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as exc:
            logging.getLogger("pika.adapters.utils.io_services_utils").exception(
                "_produce() failed, aborting connection: error=%r; sock=%s; Caller's stack:\n%s",
                exc,
                "<socket>",
                "Traceback (most recent call last):\n  File x, line 1\n",
            )

    lines = _captured("INFO", emit)
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        "sock=<socket>: ConnectionResetError: [Errno 104] Connection reset by peer"
    )


def test_own_and_debug_tracebacks_are_kept() -> None:
    # Our own unexpected errors keep their frames; so do libraries' at DEBUG
    assert any("Traceback" in x for x in _log_library_error("nightfold.worker", "INFO"))
    assert any("Traceback" in x for x in _log_library_error("pika", "DEBUG"))
