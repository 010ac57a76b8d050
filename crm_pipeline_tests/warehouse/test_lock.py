"""The DuckDB single-writer rule: a locked warehouse waits, then fails with a clear message."""

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from crm_pipeline.warehouse.store import Warehouse, WarehouseLockedError
from crm_pipeline_tests.helpers import count, extract, sqlite_runner

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def hold_lock(path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_locked_file_fails_after_timeout_naming_file_and_fix(tmp_path):
    path = tmp_path / "w.duckdb"
    with Warehouse(path).connect():
        pass
    holder = hold_lock(path, 30)
    try:
        started = time.monotonic()
        with (
            pytest.raises(WarehouseLockedError, match=r"w\.duckdb stayed locked .*'duckdb' pool"),
            Warehouse(path, lock_timeout_s=1).connect(),
        ):
            pass
        assert 0.9 < time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


def test_writer_waits_for_the_lock_and_loses_nothing(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=60)
    expected = extract(sqlite_runner(sqlite_tenants), wh).inserted
    holder = hold_lock(wh.path, 2)
    try:
        report = extract(sqlite_runner(sqlite_tenants), wh, run_id="after-wait")
    finally:
        holder.wait()
    assert report.inserted == expected
    assert count(wh, "SELECT count(*) FROM raw.transactions") == expected


def test_two_concurrent_backfills_both_succeed_without_duplicates(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=60)
    errors: list[BaseException] = []

    def backfill(run_id: str) -> None:
        try:
            extract(sqlite_runner(sqlite_tenants), Warehouse(wh.path, lock_timeout_s=60), run_id=run_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    # Threads share one process, where DuckDB's lock is per database instance; the separate
    # process in the test above covers the cross-process lock. Here both must still serialise.
    threads = [threading.Thread(target=backfill, args=(f"r{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert (
        count(
            wh,
            "SELECT count(*) FROM (SELECT transaction_id FROM raw.transactions "
            "GROUP BY ALL HAVING count(*) > 1)",
        )
        == 0
    )
