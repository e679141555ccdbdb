"""A job for fault tests: merchant_daily, except that a row whose key contains
``POISON`` makes it raise, until ``NIGHTFOLD_TEST_POISON_FIXED=1`` ("the fix").
Loaded into worker processes through ``NIGHTFOLD_JOB_MODULES=tests.support.jobs``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping

from nightfold.common.jobs import register
from nightfold.common.jobs.base import MapOutput
from nightfold.common.jobs.merchant_daily import MerchantDaily, MerchantPartial


@register
class PoisonDaily(MerchantDaily):
    name = "poison_daily"

    def map_rows(
        self,
        rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]],
        out: MapOutput[MerchantPartial],
    ) -> None:
        batch = list(rows)
        if not os.environ.get("NIGHTFOLD_TEST_POISON_FIXED"):
            for key, _cols in batch:
                if b"POISON" in key:
                    raise ValueError(f"poison row {key.decode(errors='replace')}")
        super().map_rows(batch, out)


@register
class SlowDaily(MerchantDaily):
    """merchant_daily, except that a worker started with
    ``NIGHTFOLD_TEST_SLOW_BATCH_SECONDS`` sleeps that long per scanned batch: a
    chunk that lasts, on that worker only, so a test can kill or freeze it mid-chunk."""

    name = "slow_daily"

    def map_rows(
        self,
        rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]],
        out: MapOutput[MerchantPartial],
    ) -> None:
        pause = float(os.environ.get("NIGHTFOLD_TEST_SLOW_BATCH_SECONDS") or 0)
        if pause:
            time.sleep(pause)
        super().map_rows(rows, out)
