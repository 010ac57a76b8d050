"""Per-customer activity profiles, computed for a whole batch of customers in one SQL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from crm_pipeline.warehouse.customer_tables import register_run_customers, replace_customer_rows

ACTIVITY_SQL = (Path(__file__).parent / "sql" / "customer_activity.sql").read_text()


def write_customer_activity(
    con: duckdb.DuckDBPyConnection, partition_keys: Sequence[str], run_id: str
) -> int:
    """Replace the activity rows of ``partition_keys``; returns rows written.

    Keys that the warehouse does not know raise ``KeyError`` naming them, before any write.
    """
    register_run_customers(con, partition_keys)
    return replace_customer_rows(con, "customer_activity", ACTIVITY_SQL, [run_id])
