"""``dagster dev`` on a settings file, in its own process group so it always stops cleanly."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from crm_pipeline_tests.helpers import live_processes

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DagsterDev:
    """A running ``dagster dev``: its URL, instance folder, log file and process group."""

    url: str
    home: Path
    log: Path
    pid: int


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll ``/server_info`` until the webserver answers; fail with the log's tail if it dies."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"dagster dev not up after {START_TIMEOUT_S:.0f}s:\n{log.read_text()[-3000:]}")


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    return [p.pid for p in live_processes() if p.pgid == pgid]


def stop_group(proc: subprocess.Popen, grace_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the whole process group (webserver, daemon, code server, runs), then SIGKILL
    whatever is left of it once the leader has exited or ``grace_s`` is over."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


@contextmanager
def dagster_dev(settings: Path, workdir: Path) -> Iterator[DagsterDev]:
    """Start ``dagster dev`` on the project's workspace with ``settings`` and the instance in
    ``workdir/dagster_home`` (a fresh one with the project's dagster.yaml unless it has its own);
    stop its process group on exit, also when the body fails."""
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log = workdir / "dagster_dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRM_PIPELINE_CONFIG": str(settings)}
    dagster = Path(sys.executable).with_name("dagster")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, proc, log)
        yield DagsterDev(url, home, log, proc.pid)
    finally:
        stop_group(proc)
