"""Encoded CRM events (the CRM paper's columns) with codes that never change once given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from crm_pipeline.warehouse.customer_tables import register_run_customers, replace_customer_rows

SQL_DIR = Path(__file__).parent / "sql"
LEARN_SQL = (SQL_DIR / "encodings.sql").read_text()
EVENTS_SQL = (SQL_DIR / "crm_events.sql").read_text()
NONE_CODE, UNSEEN_CODE = 0, -1


def learn_encodings(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Give every category not coded yet the next free code of its column; returns how many."""
    con.execute("BEGIN TRANSACTION")
    try:
        added = con.execute(LEARN_SQL, [run_id]).fetchall()[0][0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(added)


def write_crm_events(con: duckdb.DuckDBPyConnection, partition_keys: Sequence[str]) -> int:
    """Replace the encoded CRM events of ``partition_keys``; returns rows written.

    Categories without a code encode as ``UNSEEN_CODE``; learn first to give them one.
    """
    register_run_customers(con, partition_keys)
    return replace_customer_rows(con, "crm_events", EVENTS_SQL)
