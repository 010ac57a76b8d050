"""Security against the real PostgreSQL server: secrets files, SQL injection through database
names and filter patterns (fuzzed), and the read-only extraction account of the README."""

import logging
import re
from contextlib import closing
from pathlib import Path

import pyodbc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crm_pipeline.resources import SourceResource
from crm_pipeline.sources.credentials import CredentialsError, read_secrets_file
from crm_pipeline.sources.dialects import PostgresDialect
from crm_pipeline.sources.queries import default_query
from crm_pipeline.sources.runner import EachDbRunner
from crm_pipeline.sources.selection import DatabaseFilter
from crm_pipeline.warehouse.extract import extract_entity
from crm_pipeline.warehouse.store import Warehouse
from crm_pipeline_tests.conftest import HOSTILE_DB
from crm_pipeline_tests.helpers import JAN_2019
from crm_pipeline_tests.pg_local import PG_USER

README = Path(__file__).parents[2] / "README.md"
READER_PASSWORD = "r3ader;pw}{'"
TENANTS = ("tenant_01", "tenant_02", "tenant_03")


class CollectSink:
    """Keeps every delivered row, by database."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {}

    def write(self, database, batch) -> None:
        self.rows.setdefault(database, []).extend(batch.to_pylist())

    def discard(self, database) -> None:
        self.rows.pop(database, None)


def admin(server, database: str = "postgres") -> closing[pyodbc.Connection]:
    """A superuser connection with autocommit (CREATE/DROP DATABASE need it), closed after use."""
    dialect = PostgresDialect(server.connection_string())
    return closing(pyodbc.connect(dialect.connection_string_for(database), autocommit=True))


def catalog(server) -> list[str]:
    with admin(server) as con:
        return sorted(r[0] for r in con.execute("SELECT datname FROM pg_database").fetchall())


# ---- secrets -------------------------------------------------------------------------------


def test_secrets_file_outside_the_repository_feeds_the_source(tmp_path, pg_tenants, monkeypatch):
    secret = tmp_path / "source.conn"
    secret.write_text(pg_tenants.connection_string() + "\n")
    monkeypatch.delenv("CRM_SOURCE_CONNECTION", raising=False)
    source = SourceResource(kind="postgresql", connection_string_file=str(secret), include=list(TENANTS))
    assert source.runners()[0].databases() == list(TENANTS)


def test_secrets_file_inside_a_git_work_tree_is_refused(tmp_path):
    (tmp_path / ".git").mkdir()
    secret = tmp_path / "config" / "source.conn"
    secret.parent.mkdir()
    secret.write_text("Driver={PostgreSQL Unicode};Pwd=x;")
    with pytest.raises(CredentialsError, match=f"{re.escape(str(secret))} lies inside the git work tree"):
        read_secrets_file(secret)


def test_missing_or_empty_secrets_file_is_named(tmp_path):
    with pytest.raises(CredentialsError, match="nope.conn cannot be read"):
        read_secrets_file(tmp_path / "nope.conn")
    (tmp_path / "empty.conn").write_text("\n")
    with pytest.raises(CredentialsError, match="empty.conn is empty"):
        read_secrets_file(tmp_path / "empty.conn")


# ---- injection -----------------------------------------------------------------------------

# PostgreSQL takes any character but NUL in a quoted name, up to 63 bytes.
DATABASE_NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20
).filter(lambda name: len(name.encode()) <= 63)


def like_literal(name: str) -> str:
    """A LIKE pattern matching exactly ``name``."""
    return re.sub(r"([\\%_])", r"\\\1", name)


@pytest.mark.postgres
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=DATABASE_NAMES, pattern=st.text(min_size=1, max_size=12))
def test_fuzzed_database_names_and_patterns_never_reach_sql(pg_tenants, name, pattern):
    before = catalog(pg_tenants)
    assume(name not in before)  # names differing in case are other databases on PostgreSQL
    dialect = PostgresDialect(pg_tenants.connection_string(), login_timeout_s=5)
    with admin(pg_tenants) as con:
        con.execute(f"CREATE DATABASE {dialect.quote_identifier(name)}")
    try:
        # The runner reaches exactly that database, found by exact name and by LIKE pattern.
        for db_filter in (DatabaseFilter(include=(name,)), DatabaseFilter(name_pattern=like_literal(name))):
            runner = EachDbRunner(dialect, db_filter, workers=1)
            assert runner.databases() == [name]
            sink = CollectSink()
            runner.run("SELECT current_database() AS db", sink)
            assert sink.rows == {name: [{"db": name}]}
        # An arbitrary pattern only filters the catalog.
        both = DatabaseFilter(name_pattern=pattern, exclude_pattern=pattern)
        assert EachDbRunner(dialect, both).databases() == []
        assert set(EachDbRunner(dialect, DatabaseFilter(name_pattern=pattern)).databases()) <= {*before, name}
    finally:
        with admin(pg_tenants) as con:
            con.execute(f"DROP DATABASE {dialect.quote_identifier(name)} WITH (FORCE)")
    assert catalog(pg_tenants) == before


@pytest.mark.postgres
def test_names_differing_only_in_case_are_two_databases(pg_tenants, caplog):
    """PostgreSQL tells Casetest from casetest: include, exclude and patterns pick exactly one,
    and an include in the wrong case selects nothing and says which name was meant."""
    dialect = PostgresDialect(pg_tenants.connection_string(), login_timeout_s=5)
    pair = ["Casetest", "casetest"]
    with admin(pg_tenants) as con:
        for name in pair:
            con.execute(f"CREATE DATABASE {dialect.quote_identifier(name)}")
    try:
        picked = lambda **kw: EachDbRunner(dialect, DatabaseFilter(**kw)).databases()  # noqa: E731
        assert picked(include=("casetest",)) == ["casetest"]
        assert picked(include=tuple(pair)) == pair
        assert picked(name_pattern="C%") == ["Casetest"]
        assert "casetest" in picked(exclude=("Casetest",))
        with caplog.at_level(logging.WARNING):
            assert picked(include=("CASETEST",)) == []
        [warning] = [r.getMessage() for r in caplog.records if "include names" in r.getMessage()]
        assert "'CASETEST'" in warning and "did you mean 'Casetest' or 'casetest'?" in warning
    finally:
        with admin(pg_tenants) as con:
            for name in pair:
                con.execute(f"DROP DATABASE {dialect.quote_identifier(name)} WITH (FORCE)")


# ---- read-only account ---------------------------------------------------------------------


def readme_grants() -> tuple[list[str], list[str], list[str]]:
    """The README's PostgreSQL statements: once per server, per database outside it, inside it."""
    text = README.read_text()
    block = text[text.index("-- PostgreSQL: once per server") : text.index("-- SQL Server")]
    statements = [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("--")]
    per_server = [s for s in statements if s.startswith("CREATE ROLE")]
    outside = [s for s in statements if "ON DATABASE" in s]
    inside = [s for s in statements if s not in per_server + outside]
    return per_server, outside, inside


@pytest.fixture(scope="module")
def reader(pg_tenants) -> str:
    """The README's read-only role on the test server; its connection string."""
    per_server, outside, inside = readme_grants()
    assert per_server and outside and inside, "README lost its PostgreSQL grant statements"
    password = READER_PASSWORD.replace("'", "''")
    quote = PostgresDialect(pg_tenants.connection_string()).quote_identifier
    with admin(pg_tenants) as con:
        for statement in per_server:
            con.execute(statement.replace("'...'", f"'{password}'"))
        for tenant in (*TENANTS, HOSTILE_DB):
            con.execute(f"REVOKE ALL ON DATABASE {quote(tenant)} FROM PUBLIC")
        for tenant in TENANTS:
            for statement in outside:
                con.execute(statement.replace("tenant_01", tenant))
    for tenant in TENANTS:
        with admin(pg_tenants, tenant) as con:
            for statement in inside:
                con.execute(statement)
    return pg_tenants.connection_string(password=READER_PASSWORD).replace(f"Uid={PG_USER}", "Uid=crm_reader")


@pytest.mark.postgres
def test_the_readme_read_only_account_extracts_everything(tmp_path, pg_tenants, reader):
    def month(connection_string: str, name: str) -> int:
        runner = EachDbRunner(PostgresDialect(connection_string), DatabaseFilter(include=TENANTS))
        wh = Warehouse(tmp_path / f"{name}.duckdb")
        report = extract_entity(
            [(runner, default_query("transactions"))], wh, "transactions", "r1", "2019-01-01", JAN_2019
        )
        assert report.summary.succeeded == list(TENANTS)
        return report.inserted

    assert month(reader, "reader") == month(pg_tenants.connection_string(), "owner") > 0
    # The account really is read-only, and cannot reach a database it was not granted.
    dialect = PostgresDialect(reader)
    with closing(pyodbc.connect(dialect.connection_string_for("tenant_01"), autocommit=True)) as con:
        with pytest.raises(pyodbc.Error, match="permission denied"):
            con.execute("DELETE FROM transactions")
        with pytest.raises(pyodbc.Error, match="permission denied"):
            con.execute("CREATE TABLE scratch (x int)")
    with pytest.raises(pyodbc.Error, match="permission denied"):
        pyodbc.connect(dialect.connection_string_for(HOSTILE_DB), timeout=5)
