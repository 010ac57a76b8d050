"""Extraction from a real PostgreSQL server with several databases, through psqlODBC."""

import logging
from datetime import date
from decimal import Decimal

import pytest

from crm_pipeline.sources.dialects import PostgresDialect, SourceError
from crm_pipeline.sources.queries import default_query
from crm_pipeline.sources.runner import EachDbRunner, ExtractionError
from crm_pipeline.sources.selection import DatabaseFilter
from crm_pipeline.warehouse.extract import extract_entity
from crm_pipeline.warehouse.store import Warehouse, Window
from crm_pipeline_tests.conftest import HOSTILE_DB
from crm_pipeline_tests.helpers import JAN_2019, count
from crm_pipeline_tests.pg_local import PG_PASSWORD, free_port

pytestmark = pytest.mark.postgres
TENANTS = ["tenant_01", "tenant_02", "tenant_03"]


def pg_runner(server, engine="arrow-odbc", **kwargs) -> EachDbRunner:
    dialect = PostgresDialect(server.connection_string(), fetch_engine=engine, login_timeout_s=5)
    return EachDbRunner(dialect, **kwargs)


def jan_transactions(small_tenants) -> dict[str, int]:
    return {
        t.name: sum(1 for r in t.tables["transactions"].rows if "2019-01-01" <= r[2] < "2019-02-01")
        for t in small_tenants
    }


def test_lists_user_databases_only(pg_tenants):
    names = pg_runner(pg_tenants).databases()
    assert names == sorted([*TENANTS, HOSTILE_DB])
    assert "postgres" not in names and "template1" not in names


@pytest.mark.parametrize("engine", ["arrow-odbc", "pyodbc"])
def test_month_from_every_database_with_exact_decimals(tmp_path, pg_tenants, small_tenants, engine):
    runner = pg_runner(pg_tenants, engine, database_filter=DatabaseFilter(include=tuple(TENANTS)))
    wh = Warehouse(tmp_path / "w.duckdb")
    report = extract_entity(
        [(runner, default_query("transactions"))], wh, "transactions", "r1", "2019-01-01", JAN_2019
    )
    expected = jan_transactions(small_tenants)
    assert {r.database: r.rows for r in report.summary.results} == expected
    assert report.inserted == sum(expected.values())
    source_sum = sum(
        Decimal(str(r[3]))
        for t in small_tenants
        for r in t.tables["transactions"].rows
        if "2019-01-01" <= r[2] < "2019-02-01"
    )
    assert count(wh, "SELECT sum(amount) FROM raw.transactions") == source_sum


def test_rows_before_the_first_partition_are_counted_and_named(tmp_path, pg_tenants, small_tenants, caplog):
    """With partitions starting in February 2019, January's rows are never extracted by any
    partition: the first partition's run counts them per database and names them in a warning;
    a later partition does not count again."""
    runner = pg_runner(pg_tenants, database_filter=DatabaseFilter(include=tuple(TENANTS)))
    february, march = Window(date(2019, 2, 1), date(2019, 3, 1)), Window(date(2019, 3, 1), date(2019, 4, 1))
    sources = [(runner, default_query("transactions"))]
    wh, log = Warehouse(tmp_path / "w.duckdb"), logging.getLogger("before")
    with caplog.at_level(logging.WARNING, logger="before"):
        first, later = (
            extract_entity(sources, wh, "transactions", run, str(w.start), w, log, first_day=february.start)
            for run, w in (("r1", february), ("r2", march))
        )
    rows = {t.name: t.tables["transactions"].rows for t in small_tenants}
    expected = {name: sum(1 for r in mine if r[2] < "2019-02-01") for name, mine in rows.items()}
    assert first.rows_before_start == expected and min(expected.values()) > 0
    assert later.rows_before_start == {}
    [warning] = [r.getMessage() for r in caplog.records if "dated before" in r.getMessage()]
    assert f"{sum(expected.values())} rows in 3 database(s) are dated before 2019-02-01" in warning
    assert "tenant_02 (" in warning and "partitions.start" in warning


def test_hostile_database_name_is_read_like_any_other(tmp_path, pg_tenants, small_tenants):
    runner = pg_runner(pg_tenants, database_filter=DatabaseFilter(include=(HOSTILE_DB,)))
    wh = Warehouse(tmp_path / "w.duckdb")
    report = extract_entity([(runner, default_query("customers"))], wh, "customers", "r1", "all", None)
    assert report.inserted == len(small_tenants[0].tables["accounts"].rows)
    assert (
        count(wh, "SELECT count(*) FROM raw.customers WHERE source_db = ?", [HOSTILE_DB]) == report.inserted
    )
    # The catalog is intact: nothing the name holds was executed.
    assert len(pg_runner(pg_tenants).databases()) == 4


def test_wrong_password_names_the_server_and_hides_the_password(pg_tenants):
    bad = PostgresDialect(pg_tenants.connection_string(password="wrong"), login_timeout_s=5)
    with pytest.raises(SourceError, match="password authentication failed") as err:
        bad.list_databases()
    assert "127.0.0.1" in str(err.value) and "wrong" not in str(err.value)
    assert PG_PASSWORD not in str(err.value)


def test_unreachable_server_is_a_clear_error(pg_tenants):
    dead = PostgresDialect(pg_tenants.connection_string(port=free_port()), login_timeout_s=3)
    with pytest.raises(SourceError, match=r"postgresql server .*Server=127.0.0.1.*(refused|connect)"):
        dead.list_databases()


def test_missing_table_in_one_database_fails_or_skips_by_policy(tmp_path, pg_tenants):
    include = DatabaseFilter(include=tuple(TENANTS))
    query = "SELECT * FROM no_such_table"
    with pytest.raises(ExtractionError, match="(?s)tenant_0.*no_such_table"):
        pg_runner(pg_tenants, database_filter=include).run(query, _NullSink())
    summary = pg_runner(pg_tenants, database_filter=include, on_error="skip").run(query, _NullSink())
    assert len(summary.failed) == 3 and all("no_such_table" in r.error for r in summary.failed)


class _NullSink:
    def write(self, database, batch):
        pass

    def discard(self, database):
        pass


def test_dagster_month_from_postgres_never_logs_the_password(tmp_path, pg_tenants, monkeypatch, capfd):
    from dagster import DagsterInstance, materialize

    from crm_pipeline.assets.extraction import raw_assets
    from crm_pipeline.definitions import build_definitions

    monkeypatch.setenv("CRM_TEST_PG", pg_tenants.connection_string())
    defs = build_definitions(
        {
            "warehouse": {"path": str(tmp_path / "w.duckdb")},
            "source": {
                "kind": "postgresql",
                "connection_string_env": "CRM_TEST_PG",
                "include": TENANTS,
                "on_error": "skip",
            },
            "partitions": {"start": "2008-01-01"},
        }
    )
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            raw_assets, partition_key="2019-01-01", instance=instance, resources=defs.resources
        )
        assert result.success
        logs = " ".join(str(e.user_message) + str(e.dagster_event) for e in instance.all_logs(result.run_id))
    assert "tenant_02: " in logs
    assert PG_PASSWORD not in logs
    printed = capfd.readouterr()
    assert "tenant_02" in printed.err and PG_PASSWORD not in printed.out + printed.err
    wh = defs.resources["warehouse"].open()
    assert count(wh, "SELECT count(DISTINCT source_db) FROM raw.transactions") == 3
    with wh.connect(read_only=True) as con:
        dump = str(con.execute("SELECT * FROM extraction_log").fetchall())
    assert PG_PASSWORD not in dump


def test_missing_connection_variable_is_named(monkeypatch):
    from crm_pipeline.resources import SourceResource

    monkeypatch.delenv("CRM_NOT_SET", raising=False)
    with pytest.raises(ValueError, match="CRM_NOT_SET is not set"):
        SourceResource(kind="postgresql", connection_string_env="CRM_NOT_SET").runners()
