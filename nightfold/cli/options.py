"""Shared CLI options (rq's shape): defined once, each with an environment
fallback through the one settings loader, building one Settings object."""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from nightfold.common.config import load_settings
from nightfold.common.errors import ConfigError
from nightfold.common.logs import setup_logging
from nightfold.ops.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])

_SHARED = [
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="TOML settings file [env NIGHTFOLD_CONFIG].",
    ),
    click.option(
        "--database-url", help="mysql+pymysql://… or sqlite:///… [env NIGHTFOLD_DATABASE_URL]."
    ),
    click.option("--broker-url", help="amqp://… or db:// [env NIGHTFOLD_BROKER_URL]."),
    click.option(
        "--store-url", help="hbase://host:9090 or local://path [env NIGHTFOLD_STORE_URL]."
    ),
    click.option("--log-level", help="DEBUG, INFO, WARNING… [env NIGHTFOLD_LOG_LEVEL]."),
    click.option(
        "--log-format",
        type=click.Choice(["human", "json"]),
        help="Log line format [env NIGHTFOLD_LOG_FORMAT].",
    ),
]

_SHARED_NAMES = (
    "config_file",
    "database_url",
    "broker_url",
    "store_url",
    "log_level",
    "log_format",
)


def with_runtime(**setting_flags: str) -> Callable[[F], F]:
    """Add the shared options; pass a ready ``Runtime`` as ``rt`` to the command.

    ``setting_flags`` maps extra command parameters to settings names
    (e.g. ``chunk_rows="chunk_rows"``) so those flags override settings too.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            shared = {k: kwargs.pop(k, None) for k in _SHARED_NAMES}
            overrides = {k: v for k, v in shared.items() if k != "config_file"}
            for param, setting in setting_flags.items():
                overrides[setting] = kwargs.get(param)
            settings = load_settings(overrides, config_file=shared["config_file"])
            setup_logging(settings.log_level, settings.log_format)
            rt = Runtime(settings)
            try:
                return fn(*args, rt=rt, **kwargs)
            finally:
                rt.close()

        for option in reversed(_SHARED):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


TODAY_ENV = "NIGHTFOLD_TODAY"


def current_day(env: Mapping[str, str] | None = None) -> dt.date:
    """The date ``today`` and ``yesterday`` are relative to: the machine's, unless
    ``NIGHTFOLD_TODAY=YYYY-MM-DD`` states it -- to try a cron line's relative
    ``--day yesterday`` as a given night would run it (a drill, a test), without
    touching the clock."""
    stated = (os.environ if env is None else env).get(TODAY_ENV, "").strip()
    if not stated:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(stated)
    except ValueError:
        raise ConfigError(f"invalid {TODAY_ENV}={stated!r}: use YYYY-MM-DD") from None


def parse_day(value: str, *, today: dt.date | None = None) -> dt.date:
    """``YYYY-MM-DD``, ``YYYYMMDD``, ``today`` or ``yesterday`` (relative to
    :func:`current_day` unless ``today`` is given)."""
    text = value.strip().lower()
    if text in ("today", "yesterday"):
        base = today or current_day()
        return base - dt.timedelta(days=1) if text == "yesterday" else base
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ConfigError(f"invalid day {value!r}: use YYYY-MM-DD, 'today' or 'yesterday'")


class DayType(click.ParamType):
    name = "DAY"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return parse_day(str(value))
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


DAY = DayType()

RELATIVE_DAYS = ("today", "yesterday")
"""The nightly forms of a day: a scheduler's command names no date."""


def is_relative_day(value: str) -> bool:
    return value.strip().lower() in RELATIVE_DAYS


def day_and_form(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[dt.date, bool] | None:
    """Click callback: the day and whether it was given in the nightly form
    (``yesterday``/``today``), which also resumes stranded earlier days."""
    if value is None:
        return None
    return DAY.convert(value, param, ctx), is_relative_day(value)


def day_span(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    if (end - start).days > 3660:
        raise ConfigError("a backfill spans at most ten years")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
