"""Per-customer activity profiles, computed for a whole batch of customers in one SQL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

ACTIVITY_SQL = (Path(__file__).parent / "sql" / "customer_activity.sql").read_text()


def write_customer_activity(
    con: duckdb.DuckDBPyConnection, partition_keys: Sequence[str], run_id: str
) -> int:
    """Replace the activity rows of ``partition_keys`` in one transaction; returns rows written.

    Keys that the warehouse does not know raise ``KeyError`` naming them, before any write.
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE run_customers AS SELECT unnest(?::VARCHAR[]) AS partition_key",
        [list(partition_keys)],
    )
    unknown = con.execute(
        "SELECT partition_key FROM run_customers ANTI JOIN customer_keys USING (partition_key)"
    ).fetchall()
    if unknown:
        names = ", ".join(k for (k,) in unknown[:5])
        raise KeyError(f"{len(unknown)} customer partition(s) unknown to the warehouse: {names}")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS customer_activity AS {ACTIVITY_SQL} LIMIT 0", [""])
        con.execute(
            "DELETE FROM customer_activity WHERE partition_key IN (SELECT partition_key FROM run_customers)"
        )
        written = con.execute(f"INSERT INTO customer_activity {ACTIVITY_SQL}", [run_id]).fetchone()[0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(written)
