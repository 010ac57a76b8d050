"""Small helpers shared by tests."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
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
        [(runner, query or default_query(entity))],
        warehouse,
        entity,
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


def seed_raw(wh: Warehouse, entity: str, rows: list[dict], replace: bool = True) -> None:
    """Put ``rows`` (column -> value; missing columns NULL) into ``raw.<entity>`` as one committed load."""
    from crm_pipeline.entities import ENTITIES
    from crm_pipeline.warehouse.store import refresh_customer_keys

    cols = list(ENTITIES[entity].columns)
    load_id = f"seed-{entity}-{len(rows)}-{id(rows)}"
    with wh.connect() as con:
        if replace:
            con.execute(f"DELETE FROM raw_store.{entity}")
        con.executemany(
            f"INSERT INTO raw_store.{entity} ({', '.join(cols)}, source_db, run_id, load_id, extracted_at) "
            f"VALUES ({', '.join('?' * len(cols))}, ?, 'r', ?, now())",
            [[row.get(c) for c in cols] + [row.get("source_db", "db1"), load_id] for row in rows],
        )
        con.execute("INSERT INTO loads VALUES (?, 'r', ?, 'all', now())", [load_id, entity])
        refresh_customer_keys(con, "r")


TX_COLUMNS = ("source_db", "customer_id", "event_date", "amount", "counterpart", "direction")


def seed_transactions(wh: Warehouse, rows: list[tuple]) -> None:
    """rows: (source_db, customer_id, day, amount, counterpart, direction), committed as one load."""
    seed_raw(
        wh,
        "transactions",
        [dict(zip(TX_COLUMNS, r, strict=True)) | {"transaction_id": f"t{i}"} for i, r in enumerate(rows)],
    )


def failure_message(result) -> str:  # noqa: ANN001 - a Dagster ExecuteInProcessResult
    """The step failure of a run, with its cause chain, as one string."""
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(failure.event_specific_data)


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags of a single-run backfill over the partitions ``first`` to ``last``."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


@dataclass(frozen=True)
class LiveProcess:
    """One process of this machine, from ``/proc``."""

    pid: int
    ppid: int
    pgid: int
    cmdline: bytes


def live_processes() -> Iterator[LiveProcess]:
    """Every running process; zombies are dead and left out (some inits never reap them)."""
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, ppid, pgid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if state != "Z":
                yield LiveProcess(int(proc.name), int(ppid), int(pgid), (proc / "cmdline").read_bytes())
