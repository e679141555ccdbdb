"""The job registry: built-ins, register(), and lazily discovered entry points."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from typing import Any

import pytest

from nightfold.common import jobs
from nightfold.common.errors import ConfigError, UnknownJob
from nightfold.common.jobs import Job, MapOutput, get_job, job_names, register
from nightfold.jobs.merchant_daily import MerchantDaily


class CountJob(Job[int]):
    """A minimal user job: counts rows into one group."""

    name = "count_rows"

    def map_rows(
        self, rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]], out: MapOutput[int]
    ) -> None:
        for _ in rows:
            out.partials["all"] = out.partials.get("all", 0) + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def encode(self, partial: int) -> bytes:
        return b"%d" % partial

    def decode(self, data: bytes) -> int:
        return int(data)

    def finalize(self, group: str, partial: int) -> dict[bytes, bytes]:
        return {b"s:rows": b"%d" % partial}


class OtherCountJob(CountJob):
    """A different class under the same name."""


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees only the built-ins, and discovery runs afresh."""
    builtins = {k: v for k, v in jobs._registry.items() if k in jobs.BUILTIN_JOBS}
    monkeypatch.setattr(jobs, "_registry", builtins)
    jobs._discover.cache_clear()
    yield
    jobs._discover.cache_clear()


def entry_points_returning(monkeypatch: pytest.MonkeyPatch, *specs: tuple[str, str]) -> list[str]:
    """Make discovery see these (name, value) entry points; returns a log of its calls."""
    calls: list[str] = []

    def fake(*, group: str) -> list[metadata.EntryPoint]:
        calls.append(group)
        return [metadata.EntryPoint(name, value, group) for name, value in specs]

    monkeypatch.setattr(jobs.metadata, "entry_points", fake)
    return calls


def plugin_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    for attr, value in attrs.items():
        setattr(module, attr, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_builtin_job_is_registered() -> None:
    # Given the fresh registry / When asked / Then merchant_daily is there, as a new instance
    assert "merchant_daily" in job_names()
    job = get_job("merchant_daily")
    assert isinstance(job, MerchantDaily)
    assert get_job("merchant_daily") is not job


def test_unknown_job_lists_known_ones_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no third-party jobs
    entry_points_returning(monkeypatch)
    # When an unknown name is asked for
    with pytest.raises(UnknownJob) as info:
        get_job("nope")
    # Then the error is a ConfigError with a one-line message naming the known jobs
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == "unknown job 'nope'; known jobs: merchant_daily"


def test_register_adds_a_job_and_works_as_a_decorator() -> None:
    # Given a user job class / When registered (twice: idempotent)
    assert register(CountJob) is CountJob
    register(CountJob)
    # Then it is served by name
    job = get_job("count_rows")
    out: MapOutput[int] = MapOutput()
    job.map_rows([(b"k", {}), (b"l", {})], out)
    assert job.finalize("all", out.partials["all"]) == {b"s:rows": b"2"}
    assert job_names() == ["count_rows", "merchant_daily"]


def test_register_refuses_a_taken_name_and_non_jobs() -> None:
    # Given a registered job
    register(CountJob)
    # When another class claims its name, or a non-job is registered / Then ConfigError
    with pytest.raises(ConfigError, match="taken"):
        register(OtherCountJob)
    with pytest.raises(ConfigError, match="not a nightfold Job"):
        register(dict)  # type: ignore[arg-type]
    assert isinstance(get_job("count_rows"), CountJob)


def test_entry_points_are_discovered_once_and_loaded_on_demand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an entry point to a plugin module
    plugin_module(monkeypatch, "nf_test_plugin", CountJob=CountJob)
    calls = entry_points_returning(monkeypatch, ("count_rows", "nf_test_plugin:CountJob"))

    # When names are listed and the job asked for several times
    names = job_names()
    first, second = get_job("count_rows"), get_job("count_rows")

    # Then discovery ran once, and the job is served
    assert names == ["count_rows", "merchant_daily"]
    assert calls == ["nightfold.jobs"]
    assert isinstance(first, CountJob) and isinstance(second, CountJob)


def test_a_broken_entry_point_fails_only_when_its_job_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an entry point whose module does not import
    entry_points_returning(monkeypatch, ("broken", "nf_test_missing_module:Job"))

    # When the built-in is asked for / Then it works and the broken job is still listed
    assert isinstance(get_job("merchant_daily"), MerchantDaily)
    assert "broken" in job_names()

    # When the broken job is asked for (twice) / Then ConfigError names the entry point
    for _ in range(2):
        with pytest.raises(ConfigError, match="'broken' \\(nf_test_missing_module:Job\\)"):
            get_job("broken")


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"Job": object}, "not a nightfold Job"),
        ({"Job": CountJob}, "loads a job named 'count_rows'"),
        ({}, "failed to load"),
    ],
)
def test_an_entry_point_to_a_non_job_or_a_misnamed_job_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, attrs: dict[str, Any], message: str
) -> None:
    # Given an entry point "plugged" to something that is not a job named "plugged"
    plugin_module(monkeypatch, "nf_test_plugin", **attrs)
    entry_points_returning(monkeypatch, ("plugged", "nf_test_plugin:Job"))
    # When asked for / Then ConfigError
    with pytest.raises(ConfigError, match=message):
        get_job("plugged")


def test_builtins_win_a_name_clash_with_an_entry_point(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given our own entry point and a foreign one, both named merchant_daily
    entry_points_returning(
        monkeypatch,
        ("merchant_daily", "nightfold.jobs.merchant_daily:MerchantDaily"),
        ("merchant_daily", "evil_plugin:MerchantDaily"),
    )
    # When the job is asked for
    with caplog.at_level(logging.WARNING, logger="nightfold.common.jobs"):
        job = get_job("merchant_daily")
    # Then the built-in is served and only the foreign entry point is warned about
    assert isinstance(job, MerchantDaily)
    assert [r.getMessage() for r in caplog.records] == [
        "entry point merchant_daily = evil_plugin:MerchantDaily ignored: job 'merchant_daily'"
        " is already registered by nightfold.jobs.merchant_daily"
    ]


def test_the_installed_package_declares_the_builtin_entry_point() -> None:
    # Given the installed distribution / Then its entry point resolves to the built-in class
    (ep,) = [e for e in metadata.entry_points(group="nightfold.jobs") if e.name == "merchant_daily"]
    assert ep.load() is MerchantDaily


def test_register_cannot_take_a_builtins_name_even_before_it_is_loaded() -> None:
    # Given a class of another module named like the built-in (not loaded yet)
    class Impostor(MerchantDaily):
        name = "merchant_daily"

    # Then registering it is refused, naming the built-in
    with pytest.raises(ConfigError, match=r"taken by the built-in nightfold\.jobs\.merchant_daily"):
        register(Impostor)
