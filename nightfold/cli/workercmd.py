"""``nightfold worker``: claim and execute chunks until stopped."""

from __future__ import annotations

import click

from nightfold.cli.options import with_runtime
from nightfold.common import metrics
from nightfold.common.jobs import job_names
from nightfold.ops.runtime import Runtime
from nightfold.worker.runner import Worker


@click.group()
def worker() -> None:
    """Workers: shared-nothing processes that claim and execute chunks."""


@worker.command("run")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Chunks processed at once by this process (threads).",
)
@click.option(
    "--max-chunks",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after this many chunks (tests, benchmarks).",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics here (0: off).")
@with_runtime(metrics_port="metrics_port")
def run_cmd(rt: Runtime, concurrency: int, max_chunks: int | None, **_: object) -> None:
    """Run a worker until SIGTERM (graceful) or a second signal (at once)."""
    engine = rt.engine()
    metrics.prime(job_names())
    metrics.serve(rt.settings.metrics_port or None)
    w = Worker(
        rt.settings,
        engine,
        lambda: rt.consumer(concurrency),
        rt.store,
        concurrency=concurrency,
        max_chunks=max_chunks,
    )
    w.install_signal_handlers()
    raise SystemExit(w.run())
