"""``nightfold seed`` and ``nightfold verify``: test data and the oracle."""

from __future__ import annotations

import datetime as dt
import time

import click

from nightfold.cli.options import DAY, with_runtime
from nightfold.common.errors import VerifyMismatch
from nightfold.common.jobs import get_job
from nightfold.common.store.local import LocalStore
from nightfold.ops.runtime import Runtime
from nightfold.ops.seeding import seed_day
from nightfold.ops.verify import verify_day


@click.command("seed")
@click.option("--day", type=DAY, required=True)
@click.option("--rows", type=click.IntRange(min=1), required=True)
@click.option("--merchants", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--salt-buckets",
    type=click.IntRange(1, 100),
    default=None,
    help="Salt buckets [default: the salt_buckets setting].",
)
@click.option("--seed", "seed_value", type=int, default=1, show_default=True)
@click.option(
    "--hot-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of the rows that go to one merchant (a skewed day).",
)
@click.option(
    "--hot-customers",
    type=click.IntRange(1, 10**8),
    default=None,
    help="Distinct customers of the hot merchant's orders [default: drawn as for the others].",
)
@click.option(
    "--hot-products",
    type=click.IntRange(1, 10**7),
    default=None,
    help="Distinct products of its own for the hot merchant [default: the shared catalog].",
)
@click.option(
    "--regions",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Pre-split a table this creates into this many regions (salt buckets first, "
    "then inside the day) [default: one a salt bucket on the embedded store, 1 on HBase, "
    "where pre-splitting needs the HBase jars and ZooKeeper: see docs/operator.md].",
)
@with_runtime(salt_buckets="salt_buckets")
def seed_cmd(
    rt: Runtime,
    day: dt.date,
    rows: int,
    merchants: int,
    seed_value: int,
    hot_share: float,
    hot_customers: int | None,
    hot_products: int | None,
    regions: int | None,
    **_: object,
) -> None:
    """Write one day of realistic raw orders (same --seed, same rows; --hot-* skew it)."""
    store = rt.store()
    started = time.monotonic()
    if regions is None:
        regions = rt.settings.salt_buckets if isinstance(store, LocalStore) else 1
    try:
        n = seed_day(
            store,
            day,
            rows,
            merchants=merchants,
            salt_buckets=rt.settings.salt_buckets,
            seed=seed_value,
            hot_share=hot_share,
            hot_customers=hot_customers,
            hot_products=hot_products,
            regions=regions,
        )
        have = len(store.region_starts("nightfold_raw")) + 1
    finally:
        store.close()
    took = time.monotonic() - started
    click.echo(
        f"seeded {n} rows for {day} in {took:.1f}s ({n / max(took, 1e-9):,.0f} rows/s); "
        f"the table has {have} region{'s' if have != 1 else ''}"
    )


@click.command("verify")
@click.option("--day", type=DAY, required=True)
@click.option("--job", default=None, help="Job name [default merchant_daily].")
@click.option("--show", type=int, default=10, show_default=True, help="Differences to print.")
@with_runtime(job="job")
def verify_cmd(rt: Runtime, day: dt.date, show: int, **_: object) -> None:
    """Recompute the day's summaries in one plain process and compare field by field."""
    job = get_job(rt.settings.job)
    store = rt.store()
    try:
        report = verify_day(store, job, day, rt.settings.salt_buckets)
    finally:
        store.close()
    for diff in report.differences[:show]:
        click.echo(f"  {diff}")
    if not report.ok:
        raise VerifyMismatch(
            f"verify {day}: {len(report.differences)} difference(s) "
            f"over {report.groups_compared} groups"
        )
    sketched = f", sketched fields within their bounds ({', '.join(sorted(job.sketched))})"
    click.echo(
        f"verify {day}: OK, {report.groups_compared} groups identical ({report.rows_read} rows)"
        + (sketched if job.sketched else "")
    )
