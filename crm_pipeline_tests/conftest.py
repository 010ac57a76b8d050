"""Shared fixtures: a real PostgreSQL server on a private port, small demo tenants."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from crm_pipeline.demo.generator import DemoSpec, Tenant, generate_tenants
from crm_pipeline.demo.writers import write_postgres, write_sqlite
from crm_pipeline_tests.detectors.crm_planted import crm_planted, crm_planted_copy  # noqa: F401 - deep detectors
from crm_pipeline_tests.pg_local import PgServer, ServerBinariesMissing, start_server
from crm_pipeline_tests.planted import planted, planted_copy  # noqa: F401 - fixtures of detectors, scoring

SMALL_SPEC = DemoSpec(
    tenants=3, customers_per_tenant=3, start=date(2018, 1, 1), end=date(2019, 6, 30), seed=11
)
HOSTILE_DB = "tenant'; DROP TABLE x; --\"[]"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server started for this test session and stopped after it."""
    try:
        server = start_server()
    except ServerBinariesMissing as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def small_tenants() -> list[Tenant]:
    """Three small demo tenants (generated once per session)."""
    return list(generate_tenants(SMALL_SPEC))


@pytest.fixture(scope="session")
def pg_tenants(pg_server: PgServer, small_tenants: list[Tenant]) -> PgServer:
    """The server loaded with the small tenants plus one with a hostile name."""
    for tenant in small_tenants:
        write_postgres(tenant, pg_server.connection_string())
    write_postgres(Tenant(HOSTILE_DB, small_tenants[0].tables), pg_server.connection_string())
    return pg_server


@pytest.fixture
def sqlite_tenants(tmp_path: Path, small_tenants: list[Tenant]) -> Path:
    """The small tenants as SQLite files in a fresh folder."""
    folder = tmp_path / "tenants"
    for tenant in small_tenants:
        write_sqlite(tenant, folder)
    return folder


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> None:  # noqa: ANN001
    """Poll ``predicate`` until true or fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
