"""Faults in the middle of work: the source server dies during an extraction, a worker process dies
during scoring, the warehouse's disk fills up, another process holds the warehouse during a
backfill. Each run fails naming the cause (or waits), no row is lost or duplicated, and a re-run
completes."""

import os
import shutil
import signal
import subprocess
import threading
from contextlib import closing
from pathlib import Path

import duckdb
import pyodbc
import pytest
from dagster import DagsterInstance, materialize

from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.assets.scoring import anomaly_scores
from crm_pipeline.definitions import build_definitions
from crm_pipeline.demo.writers import write_postgres
from crm_pipeline.detectors import scoring
from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME
from crm_pipeline.resources import WarehouseResource
from crm_pipeline.sources.dialects import PostgresDialect
from crm_pipeline.sources.queries import default_query
from crm_pipeline_tests.conftest import wait_until
from crm_pipeline_tests.helpers import failure_message, live_processes, range_tags
from crm_pipeline_tests.pg_local import PgServer, ServerBinariesMissing, start_server
from crm_pipeline_tests.warehouse.test_lock import hold_lock

TENANTS = ["tenant_01", "tenant_02", "tenant_03"]
MONTH = "2019-01-01"
RAW_TRANSACTIONS = next(a for a in raw_assets if a.key.path[-1] == "raw_transactions")
# The default query, slowed to 100 ms a row so the server can be stopped while it runs.
SLOW_TRANSACTIONS = f"SELECT q.* FROM ({default_query('transactions')}) AS q, LATERAL pg_sleep(0.1)"


def extract_month(warehouse: Path, source: dict, month: str):
    """Materialize one month of ``raw_transactions`` in-process; failures come back, not raised."""
    defs = build_definitions({"warehouse": {"path": str(warehouse)}, "source": source})
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            [RAW_TRANSACTIONS],
            partition_key=month,
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )


def transaction_rows(warehouse_path: Path, january_only: bool = True) -> tuple[int, int]:
    """Visible transactions (of January 2019) and their distinct keys: equal when nothing doubled."""
    where = "event_date >= DATE '2019-01-01' AND event_date < DATE '2019-02-01'" if january_only else "TRUE"
    with closing(duckdb.connect(str(warehouse_path), read_only=True)) as con:
        return con.execute(
            "SELECT count(*), count(DISTINCT (source_db, transaction_id)) FROM raw.transactions "
            f"WHERE {where}"
        ).fetchone()


# ---- the source server stops during an extraction --------------------------------------------


@pytest.fixture
def own_pg(small_tenants):
    """A PostgreSQL server of this test alone (it gets stopped), holding the small tenants."""
    try:
        server = start_server()
    except ServerBinariesMissing as exc:
        pytest.skip(str(exc))
    try:
        for tenant in small_tenants:
            write_postgres(tenant, server.connection_string())
        yield server
    finally:
        server.stop()


def sleeping_queries(server: PgServer) -> int:
    dialect = PostgresDialect(server.connection_string(), login_timeout_s=2)
    with closing(pyodbc.connect(dialect.connection_string, timeout=2)) as con:
        return con.execute(
            # Whatever statement psqlODBC's cursor shows (DECLARE, FETCH), pg_sleep waits on this.
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
        ).fetchone()[0]


@pytest.mark.postgres
def test_server_stopped_mid_extraction_keeps_the_month_and_a_rerun_completes(tmp_path, own_pg, monkeypatch):
    monkeypatch.setenv("CRM_FAULT_PG", own_pg.connection_string())
    warehouse = tmp_path / "w.duckdb"

    def run(queries: dict[str, str]):
        source = {"kind": "postgresql", "connection_string_env": "CRM_FAULT_PG", "include": TENANTS}
        return extract_month(warehouse, {**source, "queries": queries, "login_timeout_s": 3}, MONTH)

    assert run({}).success
    before = transaction_rows(warehouse)
    assert before[0] == before[1] > 0

    stopped = threading.Event()

    def stop_when_reading() -> None:
        wait_until(lambda: sleeping_queries(own_pg) > 0, timeout=60)
        own_pg.stop(remove=False)
        stopped.set()

    stopper = threading.Thread(target=stop_when_reading)
    stopper.start()
    failed = run({"transactions": SLOW_TRANSACTIONS})
    stopper.join()
    assert stopped.is_set(), "the server was not stopped while the month's query ran"
    assert not failed.success
    message = failure_message(failed)
    assert "tenant_0" in message and "postgresql server" in message, message
    assert transaction_rows(warehouse) == before  # the previous rows of the month are intact

    own_pg.start()
    assert run({}).success
    assert transaction_rows(warehouse) == before  # exactly the right count: nothing lost, nothing doubled


# ---- the warehouse's disk fills up -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB file system (tmpfs) for the warehouse; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill ``disk`` with a ballast file until only about ``leave_bytes`` stay free."""
    ballast = disk / "ballast"
    free = shutil.disk_usage(disk).free
    with open(ballast, "wb") as out:
        out.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = max(0, free - leave_bytes)
        while remaining > 0:
            remaining -= out.write(chunk[: min(len(chunk), remaining)])
    return ballast


def test_full_disk_fails_the_extraction_clearly_and_loses_nothing(small_disk, sqlite_tenants):
    warehouse = small_disk / "w.duckdb"

    def run(month: str):
        return extract_month(warehouse, {"kind": "sqlite", "sqlite_dir": str(sqlite_tenants)}, month)

    assert run(MONTH).success
    before = transaction_rows(warehouse)
    ballast = fill(small_disk, leave_bytes=64 * 1024)
    failed = run("2019-02-01")
    assert not failed.success
    message = failure_message(failed)
    assert "w.duckdb: the disk is full" in message and "keep their previous rows" in message, message
    ballast.unlink()
    assert transaction_rows(warehouse) == before
    assert run("2019-02-01").success
    assert transaction_rows(warehouse) == before


# ---- another process holds the warehouse during a backfill -----------------------------------


def test_backfill_waits_for_another_writer_without_failed_steps(tmp_path, sqlite_tenants, small_tenants):
    warehouse = tmp_path / "w.duckdb"
    defs = build_definitions(
        {
            "warehouse": {"path": str(warehouse), "lock_timeout_s": 60},
            "source": {"kind": "sqlite", "sqlite_dir": str(sqlite_tenants)},
        }
    )
    holder = hold_lock(warehouse, 3)  # a writer outside Dagster (a notebook, a second daemon)
    try:
        with DagsterInstance.ephemeral() as instance:
            result = materialize(
                raw_assets,
                instance=instance,
                resources=defs.resources,
                tags=range_tags("2018-01-01", "2019-06-01"),
            )
    finally:
        holder.wait()
    assert result.success and not [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    expected = sum(len(t.tables["transactions"].rows) for t in small_tenants)
    assert transaction_rows(warehouse, january_only=False) == (expected, expected)


PLANTED_KEYS = ["db1.CLEAN", "db1.SHORT", "db1.SPIKY"]
PER_CUSTOMER_SQL = (
    "SELECT partition_key, count(*), count(DISTINCT run_id), min(run_id) FROM anomaly_scores GROUP BY 1 "
    "UNION ALL SELECT 'summaries', count(*), count(DISTINCT partition_key), NULL FROM customer_anomalies"
)


def pool_workers() -> list[int]:
    """The joblib/loky worker processes of this test process."""
    return [p.pid for p in live_processes() if p.ppid == os.getpid() and b"LokyProcess" in p.cmdline]


def score_one_customer_a_batch(warehouse: Path):
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, PLANTED_KEYS)
        config = {"detectors": [{"name": "kmeans"}], "workers": 2, "batch_customers": 1}
        return materialize(
            [anomaly_scores],
            instance=instance,
            resources={"warehouse": WarehouseResource(path=str(warehouse))},
            run_config={"ops": {"anomaly_scores": {"config": config}}},
            tags=range_tags(PLANTED_KEYS[0], PLANTED_KEYS[-1]),
            raise_on_error=False,
        )


def per_customer(warehouse: Path) -> dict[str, tuple[int, int, str]]:
    """Per customer: score rows, distinct runs, and the run that wrote them."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {key: tuple(rest) for key, *rest in con.execute(PER_CUSTOMER_SQL).fetchall()}


def test_worker_killed_during_scoring_fails_clearly_and_loses_nothing(planted_copy, monkeypatch):
    warehouse = Path(planted_copy.warehouse.path)
    first = score_one_customer_a_batch(warehouse)
    assert first.success
    before = per_customer(warehouse)
    assert before["summaries"] == (6, 3, None)  # 3 customers x 2 measures
    assert all(runs == 1 for key, (_, runs, _) in before.items() if key != "summaries")

    write_results = scoring.write_results

    def write_then_kill_a_worker(*args, **kwargs) -> int:
        """Commit the batch, then SIGKILL a pool worker: the next batch meets a dead worker."""
        written = write_results(*args, **kwargs)
        if not killed:
            killed.append(pool_workers()[0])
            os.kill(killed[0], signal.SIGKILL)
        return written

    killed: list[int] = []
    monkeypatch.setattr(scoring, "write_results", write_then_kill_a_worker)
    broken = score_one_customer_a_batch(warehouse)
    assert not broken.success and killed
    message = failure_message(broken)
    # db1.SHORT is too short to score: its batch never reaches the pool, db1.SPIKY's does.
    assert "a worker process died while scoring db1.SPIKY (exit codes {SIGKILL(-9)})" in message
    assert "2 customers of earlier batches have their new scores" in message
    after = per_customer(warehouse)
    assert {k: rows for k, (rows, _, _) in after.items()} == {k: rows for k, (rows, _, _) in before.items()}
    assert after["db1.CLEAN"][2] == broken.run_id, "the batch before the death is committed"
    assert after["db1.SPIKY"][2] == first.run_id, "a batch after the death keeps its previous rows"

    monkeypatch.setattr(scoring, "write_results", write_results)
    rerun = score_one_customer_a_batch(warehouse)
    assert rerun.success
    final = per_customer(warehouse)
    assert final.pop("summaries") == before.pop("summaries")
    assert final == {k: (rows, 1, rerun.run_id) for k, (rows, _, _) in before.items()}
