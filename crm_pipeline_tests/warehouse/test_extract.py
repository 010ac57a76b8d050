"""Extraction into DuckDB: idempotent partitions, schema drift, NULL keys, bad values."""

import os
import signal
import subprocess
import sys
import textwrap
from datetime import date

import pytest

from crm_pipeline.sources.queries import default_query
from crm_pipeline.sources.runner import ExtractionError
from crm_pipeline.warehouse.extract import extract_entity
from crm_pipeline.warehouse.keys import customer_file_name, customer_partition_key
from crm_pipeline.warehouse.store import Warehouse, Window
from crm_pipeline_tests.helpers import JAN_2019, count, execute_sqlite, extract, sqlite_runner


def jan_rows(small_tenants) -> int:
    return sum(
        1
        for t in small_tenants
        for row in t.tables["transactions"].rows
        if "2019-01-01" <= row[2] < "2019-02-01"
    )


def test_month_partition_loads_exactly_the_month(tmp_path, sqlite_tenants, small_tenants):
    wh = Warehouse(tmp_path / "w.duckdb")
    report = extract(sqlite_runner(sqlite_tenants), wh)
    assert report.inserted == jan_rows(small_tenants) > 0
    assert count(wh, "SELECT count(*) FROM raw.transactions") == report.inserted
    assert count(wh, "SELECT count(DISTINCT source_db) FROM raw.transactions") == 3
    assert count(wh, "SELECT count(*) FROM extraction_log WHERE status = 'ok'") == 3
    assert len(report.new_customer_keys) == count(wh, "SELECT count(*) FROM customer_keys") > 0


def test_rerun_replaces_without_duplicates(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb")
    first = extract(sqlite_runner(sqlite_tenants), wh)
    feb = Window(date(2019, 2, 1), date(2019, 3, 1))
    extract(sqlite_runner(sqlite_tenants), wh, window=feb)
    total = count(wh, "SELECT count(*) FROM raw.transactions")
    second = extract(sqlite_runner(sqlite_tenants), wh, run_id="r2")
    assert second.deleted == first.inserted == second.inserted
    assert count(wh, "SELECT count(*) FROM raw.transactions") == total
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE run_id = 'r2'") == first.inserted
    assert second.new_customer_keys == []


def test_empty_month_is_a_clean_zero(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb")
    report = extract(sqlite_runner(sqlite_tenants), wh, window=Window(date(2030, 1, 1), date(2030, 2, 1)))
    assert report.inserted == 0 and not report.summary.failed
    assert count(wh, "SELECT count(*) FROM raw.transactions") == 0


def test_schema_drift_in_one_tenant_names_database_and_column(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb")
    extract(sqlite_runner(sqlite_tenants), wh)
    before = count(wh, "SELECT count(*) FROM raw.transactions")
    execute_sqlite(sqlite_tenants / "tenant_03.sqlite", "ALTER TABLE transactions DROP COLUMN counterpart")
    with pytest.raises(ExtractionError, match=r"tenant_03.*no such column: t.counterpart"):
        extract(sqlite_runner(sqlite_tenants), wh, run_id="r2")
    assert count(wh, "SELECT count(*) FROM raw.transactions") == before
    assert count(wh, "SELECT count(*) FROM extraction_log WHERE run_id = 'r2' AND status = 'failed'") == 1


def test_query_lacking_a_column_is_named(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb")
    query = "SELECT account_id AS customer_id, account_name AS customer_name FROM accounts"
    with pytest.raises(ExtractionError, match="lacks column.*segment, country, created_date"):
        extract(sqlite_runner(sqlite_tenants), wh, entity="customers", window=None, query=query)


def test_skip_policy_keeps_the_broken_tenants_previous_rows(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb")
    extract(sqlite_runner(sqlite_tenants), wh)
    t2 = count(wh, "SELECT count(*) FROM raw.transactions WHERE source_db = 'tenant_02'")
    execute_sqlite(sqlite_tenants / "tenant_02.sqlite", "DROP TABLE transactions")
    report = extract(sqlite_runner(sqlite_tenants, on_error="skip"), wh, run_id="r2")
    assert [r.database for r in report.summary.failed] == ["tenant_02"]
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE source_db = 'tenant_02'") == t2
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE run_id = 'r2'") == report.inserted


def test_null_keys_are_rejected_with_reason_not_lost(tmp_path, sqlite_tenants):
    # A tenant whose schema allows NULL customers: the query yields one such row per tenant.
    query = default_query("transactions") + (
        " UNION ALL SELECT 'nullcust', NULL, '2019-01-15', 10, 'CP1', 'in'"
    )
    wh = Warehouse(tmp_path / "w.duckdb")
    report = extract(sqlite_runner(sqlite_tenants), wh, query=query)
    assert report.rejected == 3
    with wh.connect(read_only=True) as con:
        rows = con.execute("SELECT DISTINCT reason, row_json LIKE '%nullcust%' FROM rejected_rows").fetchall()
    assert rows == [("NULL in customer_id", True)]
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE transaction_id = 'nullcust'") == 0


def test_amount_stored_as_text_casts_or_names_the_column(tmp_path, sqlite_tenants):
    path = sqlite_tenants / "tenant_01.sqlite"
    execute_sqlite(
        path, "INSERT INTO transactions VALUES ('txt1', 'C00001', '2019-01-15', '12.50', 'CP1', 'in')"
    )
    wh = Warehouse(tmp_path / "w.duckdb")
    extract(sqlite_runner(sqlite_tenants), wh)
    assert (
        count(wh, "SELECT count(*) FROM raw.transactions WHERE transaction_id = 'txt1' AND amount = 12.5")
        == 1
    )
    execute_sqlite(
        path, "INSERT INTO transactions VALUES ('txt2', 'C00001', '2019-01-16', 'twelve', 'CP1', 'in')"
    )
    with pytest.raises(ExtractionError, match=r"tenant_01.*transactions.amount: value 'twelve'"):
        extract(sqlite_runner(sqlite_tenants), wh, run_id="r2")


def test_each_date_loads_in_its_own_month_and_a_date_that_is_none_is_named(tmp_path, sqlite_tenants):
    """The month's window is applied in the source: a row of another month is left for that
    month's partition, never loaded twice nor rejected; a date that is no date at all fails that
    database's load, naming column and value, and loads nothing of it."""
    query = default_query("transactions") + (
        " UNION ALL SELECT 'old', 'C00001', '1850-01-15', 10, 'CP1', 'in'"
        " UNION ALL SELECT 'later', 'C00001', '2019-02-15', 10, 'CP1', 'in'"
    )
    wh = Warehouse(tmp_path / "w.duckdb")
    assert extract(sqlite_runner(sqlite_tenants), wh, query=query).rejected == 0
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE transaction_id IN ('old', 'later')") == 0
    february = Window(date(2019, 2, 1), date(2019, 3, 1))
    extract(sqlite_runner(sqlite_tenants), wh, query=query, window=february, run_id="feb")
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE transaction_id = 'later'") == 3
    execute_sqlite(
        sqlite_tenants / "tenant_02.sqlite",
        "INSERT INTO transactions VALUES ('bad-date', 'C00001', '2019-01-32', 5, 'CP1', 'in')",
    )
    before = count(wh, "SELECT count(*) FROM raw.transactions")
    with pytest.raises(ExtractionError, match=r"tenant_02.*transactions.event_date: value '2019-01-32'"):
        extract(sqlite_runner(sqlite_tenants), wh, run_id="r2")
    assert count(wh, "SELECT count(*) FROM raw.transactions") == before


def test_sqlite_rows_before_the_first_partition_are_counted(tmp_path, sqlite_tenants, small_tenants):
    """The SQLite dialect's count of rows no partition extracts (ISO text dates): the tenants'
    2018 rows and one from 1850 each, with January 2019 the first partition."""
    query = default_query("transactions") + " UNION ALL SELECT 'old', 'C00001', '1850-01-15', 10, 'CP1', 'in'"
    wh = Warehouse(tmp_path / "w.duckdb")
    report = extract_entity(
        [(sqlite_runner(sqlite_tenants), query)], wh, "transactions", "r1", "2019-01-01", JAN_2019,
        first_day=JAN_2019.start,
    )  # fmt: skip
    rows = {t.name: t.tables["transactions"].rows for t in small_tenants}
    earlier = {name: 1 + sum(r[2] < "2019-01-01" for r in mine) for name, mine in rows.items()}
    assert report.rows_before_start == earlier
    assert report.inserted == count(wh, "SELECT count(*) FROM raw.transactions") > 0


def test_customer_keys_are_safe_unique_and_stable():
    assert customer_partition_key("tenant_01", "C00001") == "tenant_01.C00001"
    hostile = customer_partition_key("x'; DROP--", "a/b c")
    assert set(hostile) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~")
    assert customer_partition_key("a b", "c") != customer_partition_key("a_b", "c")
    assert customer_partition_key("a.b", "c") != customer_partition_key("a", "b.c")
    assert hostile == customer_partition_key("x'; DROP--", "a/b c")


def test_a_customer_file_name_is_safe_and_unique_for_any_key():
    """Report pages and plot files are named after keys a user may have put anything into."""
    hostile = ["../../etc/passwd", "db'><script>alert(1)</script>.C1", "DB1.C1", "db1.c1", ""]
    names = [customer_file_name(k, ".png") for k in hostile]
    assert len(set(names)) == len(names)
    assert all("/" not in n and "<" not in n and "'" not in n and n.endswith(".png") for n in names)


KILLED_EXTRACTION = textwrap.dedent(
    """
    import os, signal, sys
    import crm_pipeline.warehouse.store as store
    from crm_pipeline.warehouse.store import PartitionWriter, Warehouse
    store.CHUNK_ROWS = 1  # commit every batch, so the killed load's rows reach the store
    from crm_pipeline_tests.helpers import extract, sqlite_runner
    real_write = PartitionWriter.write
    def write_then_die(self, database, batch):
        real_write(self, database, batch)
        if database == "tenant_02":
            os.kill(os.getpid(), signal.SIGKILL)
    PartitionWriter.write = write_then_die
    extract(sqlite_runner(sys.argv[1], workers=1), Warehouse(sys.argv[2]), run_id="killed")
    """
)


def test_extraction_killed_midway_leaves_the_old_rows(tmp_path, sqlite_tenants):
    wh = Warehouse(tmp_path / "w.duckdb")
    extract(sqlite_runner(sqlite_tenants), wh)
    before = count(wh, "SELECT count(*) FROM raw.transactions")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_EXTRACTION, str(sqlite_tenants), str(wh.path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert count(wh, "SELECT count(*) FROM raw.transactions") == before
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE run_id = 'killed'") == 0
    # the killed load's rows reached the store but never became visible ...
    assert count(wh, "SELECT count(*) FROM raw_store.transactions WHERE run_id = 'killed'") > 0
    report = extract(sqlite_runner(sqlite_tenants), wh, run_id="after")
    assert count(wh, "SELECT count(*) FROM raw.transactions") == before == report.inserted
    # ... and the next write purged them
    assert count(wh, "SELECT count(*) FROM raw_store.transactions WHERE run_id = 'killed'") == 0


def test_window_must_match_entity(tmp_path, sqlite_tenants):
    with pytest.raises(ValueError, match="window is required"):
        extract(sqlite_runner(sqlite_tenants), Warehouse(tmp_path / "w.duckdb"), window=None)
    with pytest.raises(ValueError, match="not allowed"):
        extract(sqlite_runner(sqlite_tenants), Warehouse(tmp_path / "w.duckdb"), "customers", JAN_2019)


def test_unknown_customer_partition_is_refused_before_any_write(tmp_path, sqlite_tenants):
    from crm_pipeline.features.activity import write_customer_activity

    wh = Warehouse(tmp_path / "w.duckdb")
    extract(sqlite_runner(sqlite_tenants), wh)
    with wh.connect() as con:
        write_customer_activity(con, ["tenant_01.C00001"], "r1")
        with pytest.raises(KeyError, match=r"1 customer partition\(s\) unknown.*tenant_09.C00001"):
            write_customer_activity(con, ["tenant_01.C00001", "tenant_09.C00001"], "r2")
    assert count(wh, "SELECT count(*) FROM customer_activity WHERE run_id = 'r1'") == 1
