"""``nightfold master``: drive a day's run (or a backfill) to the end."""

from __future__ import annotations

import datetime as dt

import click
from sqlalchemy.exc import SQLAlchemyError

from nightfold.cli.options import DAY, day_and_form, day_span, with_runtime
from nightfold.common import metrics
from nightfold.common.db import runs as run_repo
from nightfold.common.db.engine import retrying
from nightfold.common.deadline import parse_deadline
from nightfold.common.errors import ConfigError, NightfoldError, RunConflict, RunFailed
from nightfold.common.jobs import get_job
from nightfold.common.states import RunState
from nightfold.master.backfill import Action, DayPlan, Select, latest_by_day, plan_days, run_days
from nightfold.master.days import export_days
from nightfold.master.loop import Master, Outcome
from nightfold.master.resume import days_to_resume, lookback_window
from nightfold.ops import actions
from nightfold.ops.runtime import Runtime


@click.group()
def master() -> None:
    """The master: plans a day, dispatches chunks, advances stages."""


@master.command("run")
@click.option(
    "--day",
    "day_form",
    callback=day_and_form,
    help="YYYY-MM-DD, 'yesterday' or 'today' (these two first resume unfinished earlier days).",
)
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
@click.option("--pushgateway-url", help="Push metrics to this Pushgateway (while running too).")
@click.option(
    "--resume-lookback-days",
    type=click.IntRange(0, 366),
    help="Days before --day whose unfinished runs are resumed first (0: off) "
    "[env NIGHTFOLD_RESUME_LOOKBACK_DAYS, default 7].",
)
@click.option(
    "--resume-earlier/--no-resume-earlier",
    default=None,
    help="Resume unfinished earlier days first [default: only for --day yesterday/today].",
)
@click.option(
    "--select",
    type=click.Choice([s.value for s in Select]),
    help="With --from/--to: run only days without a finished run (missing), those and "
    "days that failed or were cancelled (failed), or every day (all); finished days "
    "selected get a new generation.",
)
@click.option(
    "--max-active",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Days run at once (each by its own master thread).",
)
@click.option("--newest-first", is_flag=True, help="Run the latest days of the range first.")
@click.option("--dry-run", is_flag=True, help="Print what would run, and run nothing.")
@click.option(
    "--deadline",
    help="Each day's summaries are due by HH:MM UTC the next day; exported as a metric "
    "for the NightfoldDayLate alert [env NIGHTFOLD_DEADLINE, default none].",
)
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
    resume_lookback_days="resume_lookback_days",
    deadline="deadline",
)
def run_cmd(
    rt: Runtime,
    day_form: tuple[dt.date, bool] | None,
    from_day: dt.date | None,
    to_day: dt.date | None,
    rerun: bool,
    resume_earlier: bool | None,
    select: str | None,
    max_active: int,
    newest_first: bool,
    dry_run: bool,
    **_: object,
) -> None:
    """Run (or resume) the job for one day or a range of days.

    The nightly form (``--day yesterday``) first resumes this job's runs of the
    previous ``resume_lookback_days`` days that a killed master left unfinished,
    oldest first, so a day stranded by a reboot heals on the next night. Exits 0
    only when every run succeeded, so cron sees failures.
    """
    day, nightly = day_form if day_form is not None else (None, False)
    if day is not None and (from_day or to_day):
        raise ConfigError("give either --day or --from/--to, not both")
    if day is None and not (from_day and to_day):
        raise ConfigError("give --day, or both --from and --to")
    if resume_earlier and day is None:
        raise ConfigError("--resume-earlier goes with --day, not --from/--to")
    if day is not None and (select or newest_first or max_active > 1):
        raise ConfigError("--select, --max-active and --newest-first go with --from/--to")
    if select and rerun:
        raise ConfigError("give --select or --rerun, not both (--select all reruns every day)")
    days = [day] if day is not None else day_span(from_day, to_day)  # type: ignore[arg-type]
    job = get_job(rt.settings.job)
    engine = rt.engine()
    earlier: list[dt.date] = []
    if day is not None and (nightly if resume_earlier is None else resume_earlier):
        earlier = _stranded_days(rt, job.name, day)
    plans = plan_days(
        days,
        _latest_runs(rt, job.name, days),
        select=Select(select) if select else None,
        rerun=rerun,
        newest_first=newest_first,
    )
    if dry_run:
        _print_plan(job.name, earlier, plans, max_active)
        return
    deadline = parse_deadline(rt.settings.deadline)
    lookback = rt.settings.resume_lookback_days

    def export() -> None:  # best effort: metrics never stop a run
        try:
            export_days(engine, job.name, [*earlier, *days], deadline, lookback)
        except NightfoldError as exc:
            click.echo(f"could not export the days' metrics: {exc}", err=True)
        except SQLAlchemyError as exc:
            click.echo(f"could not export the days' metrics: {type(exc).__name__}", err=True)

    metrics.prime([job.name])
    metrics.serve(rt.settings.metrics_port or None)
    export()
    store = rt.store()
    publisher = rt.publisher()
    failures: list[str] = []

    def drive(d: dt.date, *, rerun: bool, own: bool = False) -> Outcome:
        """Drive day ``d``; ``own``: with a store and publisher of its own (a thread)."""
        st, pub = (rt.store(), rt.publisher()) if own else (store, publisher)
        try:
            master = Master(rt.settings, engine, st, pub, job, open_store=rt.store)
            outcome = master.drive(d, rerun=rerun)
        finally:
            if own:
                pub.close()
                st.close()
        click.echo(
            f"run {outcome.run.label}: {outcome.state.value}"
            + (f" ({outcome.error})" if outcome.error else "")
            + f" in {outcome.seconds:.1f}s"
        )
        if outcome.state.value != "succeeded":
            failures.append(f"{outcome.run.label} {outcome.state.value}")
        export()
        return outcome

    for plan in plans:
        if not plan.runs:
            click.echo(f"skipping {job.name}/{plan.day}: {plan.state} (--select {select})")
    pusher = metrics.Pusher(
        rt.settings.pushgateway_url, job.name, rt.settings.push_interval_seconds
    )
    try:
        with pusher:
            for d in earlier:
                click.echo(f"resuming {job.name}/{d}: its run was left unfinished")
                try:
                    drive(d, rerun=False)
                except RunConflict as exc:
                    click.echo(f"skipping {job.name}/{d}: {exc}")
            run_days(
                plans,
                lambda p: drive(p.day, rerun=p.action is Action.RERUN, own=max_active > 1),
                max_active,
            )
    finally:
        publisher.close()
        store.close()
        metrics.push(rt.settings.pushgateway_url, job.name)
    if failures:
        hint = "" if rerun or select else "; use --rerun to start a new generation"
        raise RunFailed(f"{len(failures)} run(s) did not succeed: {', '.join(failures)}{hint}")


def _print_plan(job: str, earlier: list[dt.date], plans: list[DayPlan], max_active: int) -> None:
    """The dry run: each day's latest run and what a real run would do with it."""
    click.echo(f"dry run: {job}, nothing is run")
    for d in earlier:
        click.echo(f"{d.isoformat()}  unfinished (a killed master)  -> resume first")
    for plan in plans:
        click.echo(plan.describe())
    n = sum(p.runs for p in plans) + len(earlier)
    click.echo(f"{n} day(s) would run, at most {max_active} at once")


def _latest_runs(rt: Runtime, job: str, days: list[dt.date]) -> dict[dt.date, tuple[int, RunState]]:
    """Each of ``days``' latest (generation, state)."""

    def read() -> list[tuple[dt.date, int, RunState]]:
        with rt.engine().connect() as conn:
            return run_repo.generations_between(conn, job, min(days), max(days))

    rows = retrying(
        rt.settings.database_url,
        read,
        deadline=rt.settings.connect_deadline_seconds,
        what=f"runs of {job} from {min(days)} to {max(days)}",
    )
    return latest_by_day(rows)


def _stranded_days(rt: Runtime, job: str, day: dt.date) -> list[dt.date]:
    """Earlier days of ``job`` whose latest run is unfinished, oldest first."""
    window = lookback_window(day, rt.settings.resume_lookback_days)
    if window is None:
        return []

    def read() -> list[tuple[dt.date, int, RunState]]:
        with rt.engine().connect() as conn:
            return run_repo.generations_between(conn, job, *window)

    runs = retrying(
        rt.settings.database_url,
        read,
        deadline=rt.settings.connect_deadline_seconds,
        what=f"unfinished runs before {day}",
    )
    return days_to_resume(day, rt.settings.resume_lookback_days, runs)


@click.command("retry")
@click.option("--day", type=DAY, required=True, help="The day whose failed run to retry.")
@click.option("--job", default=None, help="Job name [default merchant_daily].")
@click.option(
    "--wait/--no-wait",
    default=True,
    help="Drive the run to the end here, as `master run` does [default], or only reopen "
    "it (the next `nightfold master run --day D` finishes it).",
)
@with_runtime(job="job")
def retry_cmd(rt: Runtime, day: dt.date, wait: bool, **_: object) -> None:
    """Retry only the dead chunks of the day's failed run.

    The latest generation of the day goes back to the stage of its dead chunks;
    those chunks get fresh attempts, everything done stays done. Then (unless
    --no-wait) this command is the run's master until it ends: exit 0 only when
    it succeeded. The web console's "Retry dead chunks" is the same operation.
    """
    url = rt.settings.database_url
    engine = rt.engine()
    run = actions.latest_run(engine, url, rt.settings.job, day)
    retried = actions.retry(engine, url, run.id, "cli")
    click.echo(
        f"run {retried.run.label}: {retried.chunks} dead {retried.stage.value} chunk(s) "
        f"pending again, run {retried.run.state.value}"
    )
    if not wait:
        click.echo(f"start its master: nightfold master run --day {day} --job {rt.settings.job}")
        return
    job = get_job(rt.settings.job)
    store = rt.store()
    publisher = rt.publisher()
    try:
        master = Master(rt.settings, engine, store, publisher, job, open_store=rt.store)
        outcome = master.drive(day)
    finally:
        publisher.close()
        store.close()
    click.echo(
        f"run {outcome.run.label}: {outcome.state.value}"
        + (f" ({outcome.error})" if outcome.error else "")
        + f" in {outcome.seconds:.1f}s"
    )
    if outcome.state is not RunState.SUCCEEDED:
        raise RunFailed(f"run {outcome.run.label} {outcome.state.value} again")
