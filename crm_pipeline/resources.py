"""Dagster resources: the source databases, the DuckDB warehouse and the compute device of the
deep models, configurable in the UI."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dagster import Config, ConfigurableResource
from pydantic import Field

from crm_pipeline.sources.credentials import connection_string as read_connection_string
from crm_pipeline.sources.dialects import Dialect, make_dialect
from crm_pipeline.sources.queries import resolve_queries
from crm_pipeline.sources.runner import EachDbRunner
from crm_pipeline.sources.selection import DatabaseFilter
from crm_pipeline.warehouse.store import Warehouse

if TYPE_CHECKING:
    import torch


class SourceConfig(Config):
    """One source: a server or a folder of SQLite files, which of its databases to read, and
    the SQL that reads them."""

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
    prefix: str = Field(
        "",
        description="Put before each database name in the warehouse (source_db), so two sources "
        "may hold databases of the same name",
    )
    include: list[str] = Field(default_factory=list, description="Only these databases")
    exclude: list[str] = Field(default_factory=list, description="Never these databases")
    name_pattern: str | None = Field(None, description="LIKE pattern databases must match")
    exclude_pattern: str | None = Field(None, description="LIKE pattern of databases to skip")
    user_only: bool = True
    online_only: bool = True
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

    def database_filter(self) -> DatabaseFilter:
        """Which of the source's databases a run visits."""
        return DatabaseFilter(
            include=tuple(self.include),
            exclude=tuple(self.exclude),
            name_pattern=self.name_pattern,
            exclude_pattern=self.exclude_pattern,
            user_only=self.user_only,
            online_only=self.online_only,
        )

    def query(self, entity: str) -> str:
        """The extraction SQL of ``entity`` (configured or default)."""
        return resolve_queries(self.queries)[entity]


def _refuse_unknown_keys(where: str, given: Mapping[str, Any], known: Iterable[str]) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        shared = sorted(set(unknown) & set(SourceResource.model_fields))
        hint = f"; {', '.join(shared)} apply to every source: set them in source" if shared else ""
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}{hint}")


class SourceResource(ConfigurableResource, SourceConfig):
    """Every tenant database of one source, selected like ``sp_ineachdb``, and of any
    ``more_sources`` read in the same run (SQLite tenants and a server together, say)."""

    more_sources: list[SourceConfig] = Field(
        default_factory=list, description="Further sources read in the same run, each with its own settings"
    )
    workers: int = Field(4, description="Databases read in parallel")
    batch_size: int = Field(10_000, description="Rows per fetched batch")
    on_error: str = Field("fail", description="fail: stop the run; skip: record and go on")

    @classmethod
    def from_settings(cls, section: Mapping[str, Any]) -> SourceResource:
        """The resource of the settings file's ``source`` section. A key it does not know (a typo,
        or a shared setting inside ``more_sources``) raises ``ValueError`` saying where it is."""
        _refuse_unknown_keys("source", section, cls.model_fields)
        for index, more in enumerate(section.get("more_sources") or []):
            _refuse_unknown_keys(f"source.more_sources[{index}]", more, SourceConfig.model_fields)
        return cls(**section)

    def sources(self) -> list[SourceConfig]:
        """This source, then the ``more_sources``."""
        return [self, *self.more_sources]

    def runners(self, logger: logging.Logger | None = None) -> list[EachDbRunner]:
        """One ``sp_ineachdb`` runner per source."""
        return [self._runner(source, logger) for source in self.sources()]

    def extraction_sources(
        self, entity: str, logger: logging.Logger | None = None
    ) -> list[tuple[EachDbRunner, str]]:
        """Each source's runner with its SQL for ``entity``, as ``extract_entity`` takes them."""
        return [(self._runner(source, logger), source.query(entity)) for source in self.sources()]

    def _runner(self, source: SourceConfig, logger: logging.Logger | None) -> EachDbRunner:
        return EachDbRunner(
            source.dialect(),
            source.database_filter(),
            workers=self.workers,
            batch_size=self.batch_size,
            on_error=self.on_error,  # type: ignore[arg-type]
            logger=logger,
            prefix=source.prefix,
        )


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
        8.0,
        gt=0,
        description="Most GPU memory (torch's tensors) a deep model may take in training or scoring: its "
        "weights, optimizer state, a step and the windows. Customers train in chunks, a global model in "
        "smaller batches, and windows that do not fit stay in host memory",
    )

    def torch_device(self) -> torch.device:
        """The device, or ``DeviceUnavailableError`` naming what is missing (torch imported here:
        definitions load without it)."""
        from crm_pipeline.detectors.deep.device import resolve_device

        return resolve_device(self.device, self.fallback_to_cpu)
