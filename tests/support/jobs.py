"""Jobs for fault tests: merchant_daily, except that a row whose key contains
``POISON`` makes it raise, until ``NIGHTFOLD_TEST_POISON_FIXED=1`` ("the fix");
merchant_daily with a slow reduce, and one with a paced map that can kill its own
process at a given row. Loaded into worker processes through
``NIGHTFOLD_JOB_MODULES=tests.support.jobs``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Mapping

from nightfold.common.jobs import register
from nightfold.common.jobs.base import MapOutput
from nightfold.jobs.merchant_daily import MerchantDaily, MerchantPartial


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
class SlowReduceDaily(MerchantDaily):
    """merchant_daily whose ``finalize`` sleeps ``NIGHTFOLD_TEST_FINALIZE_SLEEP`` seconds
    per group, so a test can kill processes while a run is reducing."""

    name = "slow_reduce_daily"

    def finalize(self, group: str, partial: MerchantPartial) -> dict[bytes, bytes]:
        time.sleep(float(os.environ.get("NIGHTFOLD_TEST_FINALIZE_SLEEP", "0")))
        return super().finalize(group, partial)


@register
class StrayFamilyDaily(MerchantDaily):
    """merchant_daily whose summaries go to a column family the summary table lacks,
    until ``NIGHTFOLD_TEST_FAMILY_FIXED=1``: every reduce write gets the same
    deterministic refusal from the store (HBase: NoSuchColumnFamilyException)."""

    name = "stray_family_daily"

    def finalize(self, group: str, partial: MerchantPartial) -> dict[bytes, bytes]:
        cells = super().finalize(group, partial)
        if os.environ.get("NIGHTFOLD_TEST_FAMILY_FIXED"):
            return cells
        return {b"zz:" + column.partition(b":")[2]: value for column, value in cells.items()}


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


@register
class PacedDaily(MerchantDaily):
    """merchant_daily whose map sleeps ``NIGHTFOLD_TEST_MAP_SLEEP`` seconds per scan
    batch, so chunks last long enough for a split or a kill to land inside them; and
    whose process SIGKILLs itself once it has folded ``NIGHTFOLD_TEST_DIE_AFTER_ROWS``
    rows (a kill at a known point of a chunk: nothing after it runs, as with a kill
    from outside)."""

    name = "paced_daily"
    folded = 0

    def map_rows(
        self,
        rows: Iterable[tuple[bytes, Mapping[bytes, bytes]]],
        out: MapOutput[MerchantPartial],
    ) -> None:
        batch = list(rows)
        super().map_rows(batch, out)
        time.sleep(float(os.environ.get("NIGHTFOLD_TEST_MAP_SLEEP", "0")))
        die = int(os.environ.get("NIGHTFOLD_TEST_DIE_AFTER_ROWS", "0"))
        PacedDaily.folded += len(batch)
        if die and PacedDaily.folded >= die:
            os.kill(os.getpid(), signal.SIGKILL)
