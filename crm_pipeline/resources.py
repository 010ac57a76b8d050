"""Dagster resources: the source databases, the DuckDB warehouse and the compute device of the
deep models, configurable in the UI."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from crm_pipeline.sources.credentials import connection_string as read_connection_string
from crm_pipeline.sources.dialects import Dialect, make_dialect
from crm_pipeline.sources.queries import resolve_queries
from crm_pipeline.sources.runner import EachDbRunner
from crm_pipeline.sources.selection import DatabaseFilter
from crm_pipeline.warehouse.store import Warehouse

if TYPE_CHECKING:
    import torch


class SourceResource(ConfigurableResource):
    """Every tenant database of one source, selected like ``sp_ineachdb``."""

    kind: str = Field("sqlite", description="sqlite | postgresql | sqlserver")
    sqlite_dir: str | None = Field(None, description="Folder of SQLite tenant files")
    connection_string_env: str = Field(
        "CRM_SOURCE_CONNECTION",
        description="Environment variable holding the server's ODBC connection string",
    )
    connection_string_file: str | None = Field(
        None,
        description="Secrets file holding the connection string instead (outside the repository)",
    )
    include: list[str] = Field(default_factory=list, description="Only these databases")
    exclude: list[str] = Field(default_factory=list, description="Never these databases")
    name_pattern: str | None = Field(None, description="LIKE pattern databases must match")
    exclude_pattern: str | None = Field(None, description="LIKE pattern of databases to skip")
    user_only: bool = True
    online_only: bool = True
    workers: int = Field(4, description="Databases read in parallel")
    batch_size: int = Field(10_000, description="Rows per fetched batch")
    on_error: str = Field("fail", description="fail: stop the run; skip: record and go on")
    fetch_engine: str = Field("arrow-odbc", description="arrow-odbc | pyodbc (servers only)")
    login_timeout_s: int = 10
    queries: dict[str, str] = Field(
        default_factory=dict, description="SQL per entity overriding the demo schema's"
    )

    def dialect(self) -> Dialect:
        """The dialect, with the connection string read from the environment or secrets file."""
        connection_string = None
        if self.kind != "sqlite":
            connection_string = read_connection_string(
                self.connection_string_env, self.connection_string_file, self.kind
            )
        return make_dialect(
            self.kind,
            sqlite_dir=self.sqlite_dir,
            connection_string=connection_string,
            fetch_engine=self.fetch_engine,
            login_timeout_s=self.login_timeout_s,
        )

    def runner(self, logger: logging.Logger | None = None) -> EachDbRunner:
        """An ``sp_ineachdb`` runner over this source."""
        return EachDbRunner(
            self.dialect(),
            DatabaseFilter(
                include=tuple(self.include),
                exclude=tuple(self.exclude),
                name_pattern=self.name_pattern,
                exclude_pattern=self.exclude_pattern,
                user_only=self.user_only,
                online_only=self.online_only,
            ),
            workers=self.workers,
            batch_size=self.batch_size,
            on_error=self.on_error,  # type: ignore[arg-type]
            logger=logger,
        )

    def query(self, entity: str) -> str:
        """The extraction SQL of ``entity`` (configured or default)."""
        return resolve_queries(self.queries)[entity]


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse file."""

    path: str = Field(description="DuckDB file")
    lock_timeout_s: float = Field(
        120.0, description="How long to wait for another writer's lock before failing"
    )

    def open(self, logger: logging.Logger | None = None) -> Warehouse:
        return Warehouse(self.path, self.lock_timeout_s, logger)


class ComputeDeviceResource(ConfigurableResource):
    """Where the deep models train and score: CUDA when present, the CPU otherwise."""

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    fallback_to_cpu: bool = Field(
        False, description="When cuda is asked for and missing: use the CPU instead of failing"
    )
    mixed_precision: bool = Field(True, description="bfloat16 autocast on CUDA (the CPU trains in float32)")
    gpu_memory_budget_gb: float = Field(
        8.0, description="Most GPU memory one training step may take; customers train in chunks to fit"
    )

    def torch_device(self) -> torch.device:
        """The device, or ``DeviceUnavailableError`` naming what is missing (torch imported here:
        definitions load without it)."""
        from crm_pipeline.detectors.deep.device import resolve_device

        return resolve_device(self.device, self.fallback_to_cpu)
