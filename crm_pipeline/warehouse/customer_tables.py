"""Idempotent writes of per-customer tables: replace the rows of a run's customers at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import duckdb
import pandas as pd

#: Customers written per batch by :func:`in_batches`: large enough that DuckDB's per-statement
#: overhead is negligible, small enough that a window over ten years of days fits in memory.
BATCH_CUSTOMERS = 250
Progress = Callable[[int, int], None]
#: The rows of ``{table}`` that belong to the customers in ``run_customers``.
RUN_ROWS = "FROM {table} JOIN run_customers USING (partition_key)"


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


def run_customers_label(con: duckdb.DuckDBPyConnection) -> str:
    """The customers in ``run_customers`` as the logs name them: one key, or ``first..last (n)``."""
    first, last, n = con.execute(
        "SELECT min(partition_key), max(partition_key), count(*) FROM run_customers"
    ).fetchone()
    return first if n == 1 else f"{first}..{last} ({n} customers)"


@contextmanager
def staged_transaction(con: duckdb.DuckDBPyConnection, **frames: pd.DataFrame) -> Iterator[None]:
    """One transaction with ``frames`` registered as views by name: committed when the block
    ends, rolled back when it raises; the views are dropped either way."""
    for name, frame in frames.items():
        con.register(name, frame)
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in frames:
            con.unregister(name)


def replace_customer_rows(
    con: duckdb.DuckDBPyConnection, table: str, select_sql: str, params: Sequence[object] = ()
) -> int:
    """Replace ``table``'s rows of the customers in ``run_customers`` by ``select_sql``'s rows.

    One transaction: a re-run or an overlapping backfill never duplicates or loses rows.
    The table is created from the query's columns the first time. Returns rows written.
    """
    with staged_transaction(con):
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM ({select_sql}) LIMIT 0", params)
        con.execute(f"DELETE FROM {table} WHERE partition_key IN (SELECT partition_key FROM run_customers)")
        written = con.execute(f"INSERT INTO {table} {select_sql}", params).fetchall()[0][0]
    return int(written)


def in_batches(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    write: Callable[[], int],
    batch_size: int = BATCH_CUSTOMERS,
    progress: Progress | None = None,
) -> int:
    """Call ``write`` once per batch of customers, with ``run_customers`` holding that batch.

    Peak memory follows the batch, not the run: a backfill of thousands of customers runs
    in the memory of ``batch_size``. Every key is checked before the first write; each batch
    commits on its own (a failed run keeps whole customers, and a re-run replaces them).
    ``progress(done, total)`` is called after each batch. Afterwards ``run_customers`` holds
    every key again. Returns the rows written in all.
    """
    register_run_customers(con, partition_keys)
    keys = [k for (k,) in con.execute("SELECT partition_key FROM run_customers ORDER BY 1").fetchall()]
    written = 0
    for start in range(0, len(keys), batch_size):
        batch = keys[start : start + batch_size]
        register_run_customers(con, batch)
        written += write()
        if progress:
            progress(start + len(batch), len(keys))
    register_run_customers(con, keys)
    return written
