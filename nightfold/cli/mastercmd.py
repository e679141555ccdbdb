"""``nightfold master``: drive a day's run (or a backfill) to the end."""

from __future__ import annotations

import datetime as dt

import click

from nightfold.cli.options import DAY, day_span, with_runtime
from nightfold.common import metrics
from nightfold.common.errors import ConfigError, RunFailed
from nightfold.common.jobs import get_job
from nightfold.common.runtime import Runtime
from nightfold.master.loop import Master


@click.group()
def master() -> None:
    """The master: plans a day, dispatches chunks, advances stages."""


@master.command("run")
@click.option("--day", type=DAY, help="YYYY-MM-DD, 'yesterday' or 'today'.")
@click.option("--from", "from_day", type=DAY, help="First day of a backfill.")
@click.option("--to", "to_day", type=DAY, help="Last day of a backfill (inclusive).")
@click.option("--job", default=None, help="Job name [default merchant_daily].")
@click.option("--rerun", is_flag=True, help="Start a new generation even if the run exists.")
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Target rows per map chunk.")
@click.option("--reduce-buckets", type=click.IntRange(min=1, max=1024), help="Reduce items.")
@click.option(
    "--max-in-flight", type=click.IntRange(min=1), help="Chunks queued or running at once."
)
@click.option("--max-attempts", type=click.IntRange(min=1), help="Attempts before a chunk is dead.")
@click.option("--lease-seconds", type=click.FloatRange(min=1), help="Claim lease length.")
@click.option(
    "--salt-buckets", type=click.IntRange(min=1, max=100), help="Salt buckets of raw keys."
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics here (0: off).")
@click.option("--pushgateway-url", help="Push final metrics to this Pushgateway.")
@with_runtime(
    job="job",
    chunk_rows="chunk_rows",
    reduce_buckets="reduce_buckets",
    max_in_flight="max_in_flight",
    max_attempts="max_attempts",
    lease_seconds="lease_seconds",
    salt_buckets="salt_buckets",
    metrics_port="metrics_port",
    pushgateway_url="pushgateway_url",
)
def run_cmd(
    rt: Runtime,
    day: dt.date | None,
    from_day: dt.date | None,
    to_day: dt.date | None,
    rerun: bool,
    **_: object,
) -> None:
    """Run (or resume) the job for one day or a range of days.

    Exits 0 only when every run succeeded, so cron sees failures.
    """
    if day is not None and (from_day or to_day):
        raise ConfigError("give either --day or --from/--to, not both")
    if day is None and not (from_day and to_day):
        raise ConfigError("give --day, or both --from and --to")
    days = [day] if day is not None else day_span(from_day, to_day)  # type: ignore[arg-type]
    job = get_job(rt.settings.job)
    engine = rt.engine()
    metrics.prime([job.name])
    metrics.serve(rt.settings.metrics_port or None)
    store = rt.store()
    publisher = rt.publisher()
    failures: list[str] = []
    try:
        for d in days:
            master = Master(rt.settings, engine, store, publisher, job, open_store=rt.store)
            outcome = master.drive(d, rerun=rerun)
            click.echo(
                f"run {outcome.run.label}: {outcome.state.value}"
                + (f" ({outcome.error})" if outcome.error else "")
                + f" in {outcome.seconds:.1f}s"
            )
            if outcome.state.value != "succeeded":
                failures.append(f"{outcome.run.label} {outcome.state.value}")
    finally:
        publisher.close()
        store.close()
        metrics.push(rt.settings.pushgateway_url, job.name)
    if failures:
        hint = "" if rerun else "; use --rerun to start a new generation"
        raise RunFailed(f"{len(failures)} run(s) did not succeed: {', '.join(failures)}{hint}")
