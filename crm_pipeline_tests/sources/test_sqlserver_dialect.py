"""SQL Server's generated SQL and connection handling, without a server."""

import os
from datetime import date

import pytest

from crm_pipeline.sources.dialects import SqlServerDialect, make_dialect
from crm_pipeline.sources.odbc import parse_connection_string
from crm_pipeline.sources.selection import DatabaseFilter

CONN = "Driver={FreeTDS};Server=mssql.local;Port=1433;Uid=reader;Pwd=pw;TDS_Version=7.4;"


def test_catalog_rows_map_system_and_state():
    d = SqlServerDialect(CONN)
    assert "sys.databases" in d.list_sql
    infos = [
        d.database_info(r)
        for r in [("master", 1, "ONLINE"), ("crm", 5, "ONLINE"), ("old", 6, "OFFLINE"), ("msdb", 4, "ONLINE")]
    ]
    assert [i.name for i in DatabaseFilter().select(infos, ignore_case=True)] == ["crm"]
    assert {i.name for i in infos if i.is_system} == {"master", "msdb"}


def test_brackets_are_doubled_in_identifiers():
    d = SqlServerDialect(CONN)
    assert d.quote_identifier("a]b") == "[a]]b]"
    assert d.quote_identifier("x]; DROP TABLE t; --") == "[x]]; DROP TABLE t; --]"


def test_window_query_wraps_user_query_with_typed_parameters():
    d = SqlServerDialect(CONN)
    sql = d.date_window_query("SELECT * FROM t;  ", "event_date")
    assert sql.count("?") == 2 and "CONVERT(DATE, ?, 23)" in sql
    assert "[event_date]" in sql and ";" not in sql
    assert d.date_param(date(2019, 1, 1)) == "2019-01-01"


def test_count_before_query_is_64_bit_and_typed():
    sql = SqlServerDialect(CONN).count_before_query("SELECT * FROM t;", "event_date")
    assert sql.startswith("SELECT COUNT_BIG(*) AS rows_before") and sql.count("?") == 1
    assert "[event_date] < CONVERT(DATE, ?, 23)" in sql and ";" not in sql


def test_database_name_goes_brace_quoted_into_the_connection_string():
    d = SqlServerDialect(CONN + "Database=master;")
    pairs = parse_connection_string(d.connection_string_for("evil};Server=attacker;"))
    assert dict(pairs)["Server"] == "mssql.local"
    assert [v for k, v in pairs if k == "Database"] == ["evil};Server=attacker;"]


def test_unknown_kind_and_engine_are_clear_errors():
    with pytest.raises(ValueError, match="unknown source kind 'oracle'"):
        make_dialect("oracle", connection_string=CONN)
    with pytest.raises(ValueError, match="fetch_engine"):
        make_dialect("sqlserver", connection_string=CONN, fetch_engine="odbc2")


@pytest.mark.sqlserver
@pytest.mark.skipif(not os.environ.get("CRM_TEST_SQLSERVER"), reason="CRM_TEST_SQLSERVER not set")
def test_live_sqlserver_lists_databases():
    dialect = make_dialect("sqlserver", connection_string=os.environ["CRM_TEST_SQLSERVER"])
    names = [d.name for d in dialect.list_databases()]
    assert "master" in names
