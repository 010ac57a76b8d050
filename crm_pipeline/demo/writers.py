"""Write demo tenants as SQLite files (the embedded default) or PostgreSQL databases."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path

from crm_pipeline.demo.generator import Table, Tenant
from crm_pipeline.sources.dialects import PostgresDialect

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()
INSERT_CHUNK = 1000
log = logging.getLogger(__name__)


def schema_statements() -> list[str]:
    """The demo schema as single statements (comments dropped)."""
    text = "\n".join(line for line in SCHEMA_SQL.splitlines() if not line.startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def write_sqlite(tenant: Tenant, folder: str | Path) -> Path:
    """Write one tenant as ``<folder>/<name>.sqlite``, replacing an older file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{tenant.name}.sqlite"
    partial = target.with_suffix(".sqlite.partial")
    partial.unlink(missing_ok=True)
    con = sqlite3.connect(partial)
    try:
        for statement in schema_statements():
            con.execute(statement)
        for name, table in tenant.tables.items():
            marks = ", ".join("?" * len(table.columns))
            con.executemany(f"INSERT INTO {name} VALUES ({marks})", table.rows)
        con.commit()
    finally:
        con.close()
    partial.replace(target)
    return target


def sql_literal(value: object) -> str:
    """A value as a SQL literal for the demo loader's multi-row INSERTs (quotes doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return repr(value) if not isinstance(value, Decimal) else str(value)
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def insert_statements(name: str, table: Table, chunk: int = INSERT_CHUNK) -> Iterable[str]:
    """Multi-row INSERTs (about 30x faster than ``executemany`` through ODBC)."""
    cols = ", ".join(table.columns)
    for i in range(0, len(table.rows), chunk):
        values = ",".join("(" + ",".join(map(sql_literal, row)) + ")" for row in table.rows[i : i + chunk])
        yield f"INSERT INTO {name} ({cols}) VALUES {values}"


def write_postgres(tenant: Tenant, server_connection_string: str, replace: bool = True) -> None:
    """Create database ``tenant.name`` on a PostgreSQL server and load the tenant into it."""
    import pyodbc

    quoted = '"' + tenant.name.replace('"', '""') + '"'
    admin = pyodbc.connect(server_connection_string, autocommit=True)
    try:
        if replace:
            admin.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {quoted}")
    finally:
        admin.close()
    target = PostgresDialect(server_connection_string).connection_string_for(tenant.name)
    con = pyodbc.connect(target, autocommit=False)
    try:
        cur = con.cursor()
        for statement in schema_statements():
            cur.execute(statement)
        for name, table in tenant.tables.items():
            for statement in insert_statements(name, table):
                cur.execute(statement)
        con.commit()
    finally:
        con.close()
    log.info("loaded %s into PostgreSQL (%d rows)", tenant.name, tenant.row_count)
