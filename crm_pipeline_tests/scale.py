"""Many sources and customers at once, shared by the scale test and ``benchmarks/scale.py``:
SQLite tenant files and PostgreSQL databases extracted into one warehouse, one sensor tick that
registers every customer, one single-run backfill over all of them."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyodbc
from dagster import (
    AssetsDefinition,
    DagsterInstance,
    ExecuteInProcessResult,
    build_sensor_context,
    materialize,
)

from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.automation import CUSTOMER_ASSETS, customer_partitions_sensor
from crm_pipeline.demo.generator import DemoSpec, Tenant, generate_tenants
from crm_pipeline.demo.writers import write_postgres, write_sqlite
from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME
from crm_pipeline.resources import SourceConfig, SourceResource, WarehouseResource
from crm_pipeline_tests.helpers import range_tags

#: The environment variable the PostgreSQL source reads its connection string from.
PG_ENV = "CRM_SCALE_PG"
#: Every PostgreSQL database of the scale run starts with this (the server may hold others).
PG_PREFIX = "scale_pg_"
#: The backfill's scoring: one cheap detector, and explanations of the decision tree only,
#: so the run measures the pipeline's bulk work, not one detector's cost.
BACKFILL_CONFIG = {
    "ops": {
        "anomaly_scores": {"config": {"detectors": [{"name": "kmeans"}]}},
        "tree_explanations": {"config": {"detectors": [{"name": "decision_tree"}]}},
        "regular_patterns": {"config": {"plots": 1}},
    },
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}


@dataclass(frozen=True)
class ScaleSpec:
    """How many databases of each kind, customers in each, and which months."""

    sqlite_dbs: int
    pg_dbs: int
    customers_per_db: int
    start: date = date(2018, 7, 1)
    end: date = date(2019, 12, 31)
    seed: int = 5

    @property
    def customers(self) -> int:
        return (self.sqlite_dbs + self.pg_dbs) * self.customers_per_db

    @property
    def months(self) -> tuple[str, str]:
        return f"{self.start:%Y-%m}-01", f"{self.end:%Y-%m}-01"


def tenants(spec: ScaleSpec, count: int, seed_offset: int, prefix: str = "") -> Iterator[Tenant]:
    """``count`` demo tenants, renamed with ``prefix``."""
    if not count:
        return
    demo = DemoSpec(
        tenants=count,
        customers_per_tenant=spec.customers_per_db,
        start=spec.start,
        end=spec.end,
        seed=spec.seed + seed_offset,
    )
    for tenant in generate_tenants(demo):
        yield Tenant(prefix + tenant.name, tenant.tables)


def write_sources(spec: ScaleSpec, sqlite_dir: Path, pg_connection: str | None) -> Counter[str]:
    """Write the SQLite tenant files and the PostgreSQL databases; returns the rows per table."""
    rows: Counter[str] = Counter()
    if spec.pg_dbs and not pg_connection:
        raise ValueError("PostgreSQL databases need a server connection string")
    for tenant in tenants(spec, spec.sqlite_dbs, 0):
        write_sqlite(tenant, sqlite_dir)
        rows.update({name: len(table.rows) for name, table in tenant.tables.items()})
    for tenant in tenants(spec, spec.pg_dbs, 1, PG_PREFIX):
        write_postgres(tenant, pg_connection)
        rows.update({name: len(table.rows) for name, table in tenant.tables.items()})
    return rows


def drop_postgres(pg_connection: str) -> None:
    """Drop the server's ``scale_pg_`` databases (the test shares its server with others)."""
    with closing(pyodbc.connect(pg_connection, autocommit=True)) as con:
        names = [row[0] for row in con.execute("SELECT datname FROM pg_database").fetchall()]
        for name in (n for n in names if n.startswith(PG_PREFIX)):
            con.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def source(spec: ScaleSpec, sqlite_dir: Path, pg_connection: str | None) -> SourceResource:
    """One source resource over the SQLite folder and, as a further source, the server's
    ``scale_pg_`` databases: both are read in one extraction."""
    os.environ[PG_ENV] = pg_connection or ""
    sqlite = SourceConfig(kind="sqlite", sqlite_dir=str(sqlite_dir))
    server = SourceConfig(kind="postgresql", connection_string_env=PG_ENV, name_pattern=PG_PREFIX + "%")
    found = [config for config, count in ((sqlite, spec.sqlite_dbs), (server, spec.pg_dbs)) if count]
    return SourceResource(**found[0].model_dump(), more_sources=found[1:])


@dataclass(frozen=True)
class Timed:
    """What a stage returned and how long it took."""

    value: Any
    seconds: float


def timed(fn: Callable[[], Any]) -> Timed:
    started = time.perf_counter()
    value = fn()
    return Timed(value, time.perf_counter() - started)


def extract(
    instance: DagsterInstance, source: SourceResource, warehouse: Path, spec: ScaleSpec
) -> ExecuteInProcessResult:
    """Every month of ``spec`` from every database of ``source``: one run."""
    return materialize(
        raw_assets,
        instance=instance,
        resources={"source": source, "warehouse": WarehouseResource(path=str(warehouse))},
        tags=range_tags(*spec.months),
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


def sensor_tick(instance: DagsterInstance, warehouse: Path) -> int:
    """One evaluation of the customer sensor, its partition requests applied as the daemon does;
    returns how many partitions it added."""
    context = build_sensor_context(
        instance=instance, resources={"warehouse": WarehouseResource(path=str(warehouse))}
    )
    result = customer_partitions_sensor(context)
    added = 0
    for request in getattr(result, "dynamic_partitions_requests", None) or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        added += len(request.partition_keys)
    return added


def backfill(
    instance: DagsterInstance,
    warehouse: Path,
    keys: list[str],
    assets: list[AssetsDefinition] = CUSTOMER_ASSETS,  # noqa: B006 - read only
) -> ExecuteInProcessResult:
    """The per-customer assets for ``keys`` (consecutive partitions) as one run."""
    return materialize(
        assets,
        instance=instance,
        resources={"warehouse": WarehouseResource(path=str(warehouse))},
        tags=range_tags(keys[0], keys[-1]),
        run_config=BACKFILL_CONFIG,
    )


def customer_keys(instance: DagsterInstance) -> list[str]:
    return instance.get_dynamic_partitions(CUSTOMER_PARTITIONS_NAME)
