"""Partitions: months for extraction, dynamic ``customer`` keys for per-customer work."""

from __future__ import annotations

from dagster import DynamicPartitionsDefinition, MonthlyPartitionsDefinition, TimeWindow

from crm_pipeline.settings import load_settings
from crm_pipeline.warehouse.store import Window

CUSTOMER_PARTITIONS_NAME = "customer"

monthly_partitions = MonthlyPartitionsDefinition(
    start_date=str(load_settings()["partitions"]["start"]), end_offset=0
)
customer_partitions = DynamicPartitionsDefinition(name=CUSTOMER_PARTITIONS_NAME)


def window_of(time_window: TimeWindow) -> Window:
    """A Dagster time window (one month or a single-run range of months) as dates."""
    return Window(time_window.start.date(), time_window.end.date())


def partition_label(keys: list[str]) -> str:
    """How a run's partition(s) appear in the logs: one key, or ``first..last (n)``."""
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]} ({len(keys)})"
