"""The "before" of ``bench.hot``: merchant_daily reducing whole merchants (no shards,
no combine stage), as every version before issue 16 did; loaded into the bench's
worker processes with ``NIGHTFOLD_JOB_MODULES=bench.hotjobs``."""

from __future__ import annotations

from nightfold.common.jobs import register
from nightfold.jobs.merchant_daily import MerchantDaily


@register
class UnshardedDaily(MerchantDaily):
    """merchant_daily with ``sharded = False``, summaries in a table of its own."""

    name = "merchant_daily_unsharded"
    summary_table = "nightfold_summary_unsharded"
    sharded = False
