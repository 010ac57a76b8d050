"""Small helpers shared by tests."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

from crm_pipeline.sources.dialects import SQLiteDialect
from crm_pipeline.sources.queries import default_query
from crm_pipeline.sources.runner import EachDbRunner
from crm_pipeline.warehouse.extract import ExtractionReport, extract_entity
from crm_pipeline.warehouse.store import Warehouse, Window

JAN_2019 = Window(date(2019, 1, 1), date(2019, 2, 1))


def sqlite_runner(folder: Path, **kwargs) -> EachDbRunner:
    return EachDbRunner(SQLiteDialect(folder), **kwargs)


def extract(
    runner: EachDbRunner,
    warehouse: Warehouse,
    entity: str = "transactions",
    window: Window | None = JAN_2019,
    query: str | None = None,
    run_id: str = "r1",
) -> ExtractionReport:
    return extract_entity(
        runner,
        warehouse,
        entity,
        query or default_query(entity),
        run_id,
        "2019-01-01" if window else "all",
        window,
    )


def execute_sqlite(path: Path, *statements: str) -> None:
    con = sqlite3.connect(path)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


def count(warehouse: Warehouse, sql: str, params: list | None = None) -> int:
    with warehouse.connect(read_only=True) as con:
        return con.execute(sql, params or []).fetchone()[0]
