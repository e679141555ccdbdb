"""The job registry: job names -> job classes.

Built-in jobs (:data:`BUILTIN_JOBS`, in ``nightfold/jobs/``) are named here and
loaded on first use like entry points, so importing the registry imports no
product job; a user's job is a :class:`Job`
subclass plus either a :func:`register` call or an entry point in the
``nightfold.jobs`` group (``my_job = "my_pkg.jobs:MyJob"``). Entry points are
discovered lazily, once, and loaded only when their job is asked for, so a
broken third-party package cannot break the built-ins or other jobs: it raises
:class:`ConfigError` naming the entry point when (and only when) its job is
requested. Built-ins win a name clash with an entry point or a :func:`register`
call (our own package declares ``merchant_daily`` as an entry point too, pointing
at the same class).
"""

from __future__ import annotations

import functools
import importlib
import logging
from importlib import metadata
from typing import Any

from nightfold.common.errors import ConfigError, UnknownJob
from nightfold.common.jobs.base import Job, MapOutput

__all__ = ["Job", "MapOutput", "get_job", "import_job_modules", "job_names", "register"]

ENTRY_POINT_GROUP = "nightfold.jobs"

log = logging.getLogger(__name__)

BUILTIN_JOBS = {"merchant_daily": "nightfold.jobs.merchant_daily:MerchantDaily"}
"""Built-in job name -> ``module:Class`` (a string: ``common/`` imports nothing of
``nightfold/``), loaded on first use."""

_registry: dict[str, type[Job[Any]] | metadata.EntryPoint] = {
    name: metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
    for name, value in BUILTIN_JOBS.items()
}
"""Registered classes, and built-ins and discovered entry points not loaded yet."""


def _check(job_cls: object, origin: str) -> type[Job[Any]]:
    if not (isinstance(job_cls, type) and issubclass(job_cls, Job)):
        raise ConfigError(f"{origin}: {job_cls!r} is not a nightfold Job subclass")
    name = getattr(job_cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{origin}: job class {job_cls.__qualname__} has no `name`")
    return job_cls


def register(job_cls: type[Job[Any]]) -> type[Job[Any]]:
    """Register a job class under its ``name``; usable as a class decorator.

    Registering the same class again is a no-op; another class under a taken
    name raises :class:`ConfigError` (silently replacing a job would change
    what a run computes).
    """
    job_cls = _check(job_cls, "register()")
    builtin = BUILTIN_JOBS.get(job_cls.name)
    if builtin is not None and builtin != _entry_value(job_cls):
        raise ConfigError(f"job name {job_cls.name!r} is taken by the built-in {builtin}")
    current = _registry.get(job_cls.name)
    if isinstance(current, type) and current is not job_cls:
        raise ConfigError(
            f"job name {job_cls.name!r} is taken by {current.__module__}.{current.__qualname__}"
        )
    _registry[job_cls.name] = job_cls
    return job_cls


def _entry_value(job_cls: type[Job[Any]]) -> str:
    return f"{job_cls.__module__}:{job_cls.__qualname__}"


@functools.cache
def _discover() -> None:
    """Record the ``nightfold.jobs`` entry points (once; nothing is imported here)."""
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        current = _registry.get(ep.name)
        if current is None:
            _registry[ep.name] = ep
            continue
        taken = _entry_value(current) if isinstance(current, type) else current.value
        if ep.value != taken:
            log.warning(
                "entry point %s = %s ignored: job %r is already registered by %s",
                ep.name,
                ep.value,
                ep.name,
                taken.partition(":")[0],
            )


def _load(ep: metadata.EntryPoint) -> type[Job[Any]]:
    origin = f"job entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP}"
    try:
        loaded = ep.load()
    except Exception as exc:
        raise ConfigError(f"{origin} failed to load: {type(exc).__name__}: {exc}") from exc
    job_cls = _check(loaded, origin)
    if job_cls.name != ep.name:
        raise ConfigError(f"{origin} loads a job named {job_cls.name!r}")
    return job_cls


def get_job(name: str) -> Job[Any]:
    """A fresh instance of the job registered as ``name``.

    Raises :class:`UnknownJob` (listing the known jobs) for an unknown name and
    :class:`ConfigError` when the job's entry point cannot be loaded.
    """
    _discover()
    entry = _registry.get(name)
    if entry is None:
        raise UnknownJob(f"unknown job {name!r}; known jobs: {', '.join(job_names()) or 'none'}")
    if isinstance(entry, metadata.EntryPoint):
        entry = _registry[name] = _load(entry)
    return entry()


def import_job_modules(modules: str) -> None:
    """Import the comma-separated ``modules`` so the jobs they ``register`` exist.

    The light alternative to an entry point for a job that is not packaged
    (setting ``job_modules`` / ``NIGHTFOLD_JOB_MODULES``).
    """
    for name in filter(None, (m.strip() for m in modules.split(","))):
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(
                f"job module {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc


def job_names() -> list[str]:
    """Every known job name, sorted (entry points included without importing them)."""
    _discover()
    return sorted(_registry)
