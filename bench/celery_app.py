"""The Celery side of the comparison: the same job as a Celery chord.

The map task is nightfold's own map step (``worker.executor.run_map``: scan the
chunk's key range from HBase, fold with ``MerchantDaily.map_rows``, write the
partials by reduce bucket, idempotently); the chord's body replaces itself with
a group of reduce tasks (``run_reduce``: merge one bucket's partials), and then,
merchant_daily being sharded, a group of combine tasks (``run_combine``: merge each
group's shards, write the summaries). So both systems do identical work per chunk and
differ only in how it is coordinated: Celery's messages, acks and result backend against
nightfold's MySQL claims and leases.

Configured from the environment (set by ``bench.celery_compare``):
``BENCH_CELERY_BROKER`` (the same RabbitMQ vhost), ``BENCH_CELERY_BACKEND``
(a ``db+mysql+pymysql://`` result backend on the same MariaDB: chords need one),
``BENCH_CELERY_QUEUE`` and ``BENCH_STORE_URL``. Tasks run with ``acks_late``
and a prefetch of one.

    celery -A bench.celery_app worker --concurrency 1 -Q $BENCH_CELERY_QUEUE
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, chord, group

from bench.common import DAY
from bench.runner import NoLease, NoRecords, synthetic_claim
from nightfold.common.db.chunks import Claim
from nightfold.common.db.runs import RunParams
from nightfold.common.keys import KeyRange, combine_prefix, partial_prefix, prefix_range
from nightfold.common.states import Stage
from nightfold.common.store import open_store
from nightfold.common.store.base import Store
from nightfold.jobs.merchant_daily import MerchantDaily
from nightfold.worker.combine import run_combine
from nightfold.worker.executor import run_map, run_reduce

GENERATION = 9
"""Celery's partials live at generation 9 of the day, apart from nightfold's (1)."""
REDUCE_BUCKETS = RunParams.reduce_buckets
SUMMARY_TABLE = "celery_summary"


class CeleryMerchantDaily(MerchantDaily):
    """The same job, writing its summaries to a table of its own."""

    summary_table = SUMMARY_TABLE


JOB = CeleryMerchantDaily()

app = Celery("nfbench")
app.conf.update(
    broker_url=os.environ.get("BENCH_CELERY_BROKER", "amqp://localhost//"),
    result_backend=os.environ.get("BENCH_CELERY_BACKEND", "db+sqlite:///celery-results.db"),
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "nfbench.celery"),
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


_store: Store | None = None


def store() -> Store:
    global _store
    if _store is None:
        _store = open_store(os.environ["BENCH_STORE_URL"])
    return _store


def _claim(stage: Stage, idx: int, key_range: KeyRange) -> Claim:
    """Celery has no runs and no leases: a synthetic claim, progress ticks go nowhere."""
    return synthetic_claim(stage, idx, key_range, generation=GENERATION, owner="celery")


@app.task(name="nfbench.map_chunk")
def map_chunk(idx: int, start: str, end: str) -> dict[str, int]:
    key_range = KeyRange(bytes.fromhex(start), bytes.fromhex(end))
    result = run_map(_claim(Stage.MAP, idx, key_range), store(), JOB, NoLease(), NoRecords())
    return {"idx": idx, "rows": result.rows_read, "malformed": result.rows_malformed}


@app.task(name="nfbench.reduce_bucket")
def reduce_bucket(bucket: int) -> dict[str, int]:
    key_range = prefix_range(partial_prefix("merchant_daily", DAY, GENERATION, bucket))
    result = run_reduce(_claim(Stage.REDUCE, bucket, key_range), store(), JOB, NoLease(), None)
    return {"bucket": bucket, "partials": result.rows_read}


@app.task(name="nfbench.combine_bucket")
def combine_bucket(bucket: int) -> dict[str, int]:
    key_range = prefix_range(combine_prefix("merchant_daily", DAY, GENERATION, bucket))
    result = run_combine(_claim(Stage.COMBINE, bucket, key_range), store(), JOB, NoLease())  # type: ignore[arg-type]
    return {"bucket": bucket, "rows": result.rows_read}


@app.task(name="nfbench.combine_all", bind=True)
def combine_all(self: Any, reduce_results: list[dict[str, int]]) -> Any:
    """After every reduce: one combine task per bucket (the chord waits for them)."""
    raise self.replace(group(combine_bucket.si(b) for b in range(REDUCE_BUCKETS)))


@app.task(name="nfbench.reduce_all", bind=True)
def reduce_all(self: Any, map_results: list[dict[str, int]]) -> Any:
    """The chord's body: fan out to one reduce task per bucket, then (a sharded job)
    to the combine tasks."""
    reduces = group(reduce_bucket.si(b) for b in range(REDUCE_BUCKETS))
    if not JOB.sharded:
        raise self.replace(reduces)
    raise self.replace(chord(reduces, combine_all.s()))
