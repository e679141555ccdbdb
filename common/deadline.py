"""A job's daily deadline: "the summaries of day D are due by HH:MM UTC on D+1".

One setting (``deadline``, ``HH:MM`` in UTC, empty for none) read by the master,
which exports each recent day's due time as a metric so an alert can say a day is
late, and by ``nightfold status --days``, which marks late days. Pure functions.
"""

from __future__ import annotations

import datetime as dt
import re

from nightfold.common.errors import ConfigError

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_deadline(text: str) -> dt.time | None:
    """``"07:00"`` -> 07:00 UTC; ``""`` (or ``"none"``/``"off"``) -> no deadline."""
    value = text.strip().lower()
    if value in ("", "none", "off"):
        return None
    m = _HHMM.match(value)
    if m is None:
        raise ConfigError(f"setting deadline: {text!r} is not HH:MM (UTC), e.g. 07:00")
    return dt.time(int(m[1]), int(m[2]), tzinfo=dt.UTC)


def due_at(day: dt.date, deadline: dt.time) -> dt.datetime:
    """When ``day``'s summaries are due: ``deadline`` (UTC) on the next day."""
    nxt = day + dt.timedelta(days=1)
    return dt.datetime.combine(nxt, deadline.replace(tzinfo=None), tzinfo=dt.UTC)


def is_late(
    day: dt.date,
    deadline: dt.time | None,
    *,
    succeeded_at: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Whether ``day`` missed its deadline: not succeeded by its due time, either
    still not succeeded ``now`` or succeeded after it. Naive datetimes are UTC."""
    if deadline is None:
        return False
    due = due_at(day, deadline)
    if succeeded_at is not None:
        return _utc(succeeded_at) > due
    return _utc(now) > due


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
