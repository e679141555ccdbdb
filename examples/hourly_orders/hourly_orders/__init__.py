"""An example nightfold job, packaged on its own (docs/jobs.md)."""

from hourly_orders.job import HourlyOrders, HourTotals

__all__ = ["HourTotals", "HourlyOrders"]
