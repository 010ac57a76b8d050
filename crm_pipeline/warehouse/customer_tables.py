"""Idempotent writes of per-customer tables: replace the rows of a run's customers at once."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb


def register_run_customers(con: duckdb.DuckDBPyConnection, partition_keys: Sequence[str]) -> None:
    """Put the run's keys in ``run_customers``; unknown keys raise ``KeyError`` naming them."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE run_customers AS SELECT DISTINCT unnest(?::VARCHAR[]) AS partition_key",
        [list(partition_keys)],
    )
    unknown = con.execute(
        "SELECT partition_key FROM run_customers ANTI JOIN customer_keys USING (partition_key) ORDER BY 1"
    ).fetchall()
    if unknown:
        names = ", ".join(k for (k,) in unknown[:5])
        raise KeyError(f"{len(unknown)} customer partition(s) unknown to the warehouse: {names}")


def replace_customer_rows(
    con: duckdb.DuckDBPyConnection, table: str, select_sql: str, params: Sequence[object] = ()
) -> int:
    """Replace ``table``'s rows of the customers in ``run_customers`` by ``select_sql``'s rows.

    One transaction: a re-run or an overlapping backfill never duplicates or loses rows.
    The table is created from the query's columns the first time. Returns rows written.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM ({select_sql}) LIMIT 0", params)
        con.execute(f"DELETE FROM {table} WHERE partition_key IN (SELECT partition_key FROM run_customers)")
        written = con.execute(f"INSERT INTO {table} {select_sql}", params).fetchall()[0][0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(written)
