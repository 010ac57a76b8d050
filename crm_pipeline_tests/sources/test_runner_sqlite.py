"""The sp_ineachdb runner over SQLite files: union, tagging, batches, error policies."""

import logging

import pyarrow as pa
import pytest

from crm_pipeline.sources.runner import ExtractionError
from crm_pipeline.sources.selection import DatabaseFilter
from crm_pipeline_tests.helpers import execute_sqlite, sqlite_runner


class ListSink:
    def __init__(self):
        self.batches: list[tuple[str, pa.RecordBatch]] = []
        self.discarded: list[str] = []

    def write(self, database, batch):
        self.batches.append((database, batch))

    def discard(self, database):
        self.discarded.append(database)
        self.batches = [(d, b) for d, b in self.batches if d != database]


def test_union_is_tagged_and_batched(sqlite_tenants, small_tenants):
    sink = ListSink()
    summary = sqlite_runner(sqlite_tenants, batch_size=100, workers=2).run("SELECT * FROM transactions", sink)
    expected = {t.name: len(t.tables["transactions"].rows) for t in small_tenants}
    assert {r.database: r.rows for r in summary.results} == expected
    assert all(r.status == "ok" and r.seconds >= 0 for r in summary.results)
    assert max(b.num_rows for _, b in sink.batches) <= 100
    assert sum(b.num_rows for _, b in sink.batches) == sum(expected.values())


def test_filter_selects_databases(sqlite_tenants):
    runner = sqlite_runner(sqlite_tenants, database_filter=DatabaseFilter(exclude=("tenant_02",)))
    assert runner.databases() == ["tenant_01", "tenant_03"]


def test_a_filter_that_matches_nothing_is_named_once_with_a_hint(sqlite_tenants, caplog):
    """File names keep their case; SQL Server's brackets are literal. Each is warned about once
    per runner, not once per month of a backfill."""
    db_filter = DatabaseFilter(include=("TENANT_01", "tenant_02"), name_pattern="tenant[_]%")
    runner = sqlite_runner(sqlite_tenants, database_filter=db_filter)
    with caplog.at_level(logging.WARNING):
        assert runner.databases() == [] and runner.databases() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "include names 'TENANT_01'" in warnings[0] and "did you mean 'tenant_01'?" in warnings[0]
    assert "name_pattern 'tenant[_]%' matches no database" in warnings[1]
    assert "[...] is literal here" in warnings[1]
    escaped = sqlite_runner(sqlite_tenants, database_filter=DatabaseFilter(name_pattern="tenant\\_0%"))
    assert escaped.databases() == ["tenant_01", "tenant_02", "tenant_03"]


def test_fail_policy_names_the_broken_database(sqlite_tenants):
    execute_sqlite(sqlite_tenants / "tenant_02.sqlite", "DROP TABLE transactions")
    sink = ListSink()
    with pytest.raises(ExtractionError, match="tenant_02.*no such table: transactions") as err:
        sqlite_runner(sqlite_tenants).run("SELECT * FROM transactions", sink)
    assert err.value.database == "tenant_02"
    assert "tenant_02" in sink.discarded


def test_skip_policy_records_and_goes_on(sqlite_tenants):
    execute_sqlite(sqlite_tenants / "tenant_02.sqlite", "DROP TABLE transactions")
    sink = ListSink()
    summary = sqlite_runner(sqlite_tenants, on_error="skip").run("SELECT * FROM transactions", sink)
    assert summary.succeeded == ["tenant_01", "tenant_03"]
    [failed] = summary.failed
    assert failed.database == "tenant_02" and "no such table" in failed.error
    assert {d for d, _ in sink.batches} == {"tenant_01", "tenant_03"}


def test_sink_failure_counts_as_that_database_failing(sqlite_tenants):
    class Picky(ListSink):
        def write(self, database, batch):
            if database == "tenant_03":
                raise ValueError("bad batch")
            super().write(database, batch)

    summary = sqlite_runner(sqlite_tenants, on_error="skip").run("SELECT 1 AS x", Picky())
    assert [r.database for r in summary.failed] == ["tenant_03"]


def test_bad_settings_are_refused(sqlite_tenants):
    with pytest.raises(ValueError, match="on_error"):
        sqlite_runner(sqlite_tenants, on_error="ignore")
    with pytest.raises(ValueError, match="workers"):
        sqlite_runner(sqlite_tenants, workers=0)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        sqlite_runner(tmp_path / "nope").databases()


def test_hostile_sqlite_file_name_is_just_a_name(sqlite_tenants):
    hostile = "t'; DROP TABLE transactions; --\"[x] %20#?"
    (sqlite_tenants / "tenant_01.sqlite").rename(sqlite_tenants / f"{hostile}.sqlite")
    sink = ListSink()
    summary = sqlite_runner(sqlite_tenants, database_filter=DatabaseFilter(include=(hostile,))).run(
        "SELECT count(*) AS n FROM transactions", sink
    )
    assert summary.succeeded == [hostile]
    assert sink.batches[0][1].column(0)[0].as_py() > 0
