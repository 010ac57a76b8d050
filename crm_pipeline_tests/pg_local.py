"""A throw-away PostgreSQL server on a private port and socket folder (tests, benchmarks).

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user.
fsync is off: the data is disposable.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_PASSWORD = "s3cret-pw;{x}"  # holds ODBC-special characters on purpose
PG_USER = "crm"


class ServerBinariesMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (newest installed version)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise ServerBinariesMissing(f"PostgreSQL binary {name} not installed (scripts/test installs it)")
    return found[-1]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running server: its port, folder and the user to run its tools as."""

    port: int
    root: Path
    run_as: list[str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def connection_string(self, password: str = PG_PASSWORD, port: int | None = None) -> str:
        """psqlODBC connection string of the superuser, to the ``postgres`` database."""
        pw = "{" + password.replace("}", "}}") + "}"
        return (
            "Driver={PostgreSQL Unicode};Server=127.0.0.1;"
            f"Port={port or self.port};Uid={PG_USER};Pwd={pw};Database=postgres;"
        )

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, pg_bin("pg_ctl"), "-D", str(self.data_dir), "-w", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self.pg_ctl("-o", opts, "-l", str(self.root / "log"), "start")

    def stop(self, remove: bool = True) -> None:
        subprocess.run(
            [*self.run_as, pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"],
            capture_output=True,
        )
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PgServer:
    """initdb + pg_ctl start on a free port, password auth over TCP (scram-sha-256)."""
    root = Path(tempfile.mkdtemp(prefix="crm-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o755)
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if run_as:
        shutil.chown(pwfile, "postgres")
    subprocess.run(
        [
            *run_as,
            pg_bin("initdb"),
            "-D",
            str(root / "data"),
            "-U",
            PG_USER,
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
    server = PgServer(free_port(), root, run_as)
    server.start()
    return server
