"""Extraction from a real PostgreSQL server with several databases, through psqlODBC."""

from decimal import Decimal

import pytest

from crm_pipeline.sources.dialects import PostgresDialect, SourceError
from crm_pipeline.sources.queries import default_query
from crm_pipeline.sources.runner import EachDbRunner, ExtractionError
from crm_pipeline.sources.selection import DatabaseFilter
from crm_pipeline.warehouse.extract import extract_entity
from crm_pipeline.warehouse.store import Warehouse
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
        runner, wh, "transactions", default_query("transactions"), "r1", "2019-01-01", JAN_2019
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


def test_hostile_database_name_is_read_like_any_other(tmp_path, pg_tenants, small_tenants):
    runner = pg_runner(pg_tenants, database_filter=DatabaseFilter(include=(HOSTILE_DB,)))
    wh = Warehouse(tmp_path / "w.duckdb")
    report = extract_entity(runner, wh, "customers", default_query("customers"), "r1", "all", None)
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
