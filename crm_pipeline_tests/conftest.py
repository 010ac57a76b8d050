"""Shared fixtures: a real PostgreSQL server on a private port, small demo tenants."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from crm_pipeline.demo.generator import DemoSpec, Tenant, generate_tenants
from crm_pipeline.demo.writers import write_postgres, write_sqlite

SMALL_SPEC = DemoSpec(
    tenants=3, customers_per_tenant=3, start=date(2018, 1, 1), end=date(2019, 6, 30), seed=11
)
PG_PASSWORD = "s3cret-pw;{x}"  # holds ODBC-special characters on purpose
HOSTILE_DB = "tenant'; DROP TABLE x; --\"[]"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.skip(f"PostgreSQL server binary {name} not installed (scripts/test installs it)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running PostgreSQL server: its port, data folder and superuser connection string."""

    port: int
    data_dir: Path
    run_as: list[str]

    def connection_string(self, password: str = PG_PASSWORD, port: int | None = None) -> str:
        pw = "{" + password.replace("}", "}}") + "}"
        return (
            "Driver={PostgreSQL Unicode};Server=127.0.0.1;"
            f"Port={port or self.port};Uid=crm;Pwd={pw};Database=postgres;"
        )

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, _pg_bin("pg_ctl"), "-D", str(self.data_dir), "-w", *args],
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """Start PostgreSQL (initdb + pg_ctl, fsync off) as an ordinary user; stop it at the end."""
    root = Path(tempfile.mkdtemp(prefix="crm-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o755)
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if run_as:
        shutil.chown(pwfile, "postgres")
    data = root / "data"
    subprocess.run(
        [
            *run_as,
            _pg_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "crm",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = PgServer(port, data, run_as)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    server.pg_ctl("-o", opts, "-l", str(root / "log"), "start")
    try:
        yield server
    finally:
        subprocess.run(
            [*run_as, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


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
