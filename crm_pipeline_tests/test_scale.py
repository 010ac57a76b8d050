"""Test-sized scale run (``benchmarks/scale.py`` is the benchmark-sized one): 20 SQLite tenant
files and 10 PostgreSQL databases extracted into one warehouse in one run, one sensor tick that registers
all 210 customers, and one single-run backfill over all of them."""

from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from crm_pipeline_tests.scale import (
    ScaleSpec,
    backfill,
    customer_keys,
    drop_postgres,
    extract,
    sensor_tick,
    source,
    write_sources,
)

SPEC = ScaleSpec(sqlite_dbs=20, pg_dbs=10, customers_per_db=7)  # 210: more than INLINE_PLOT_CUSTOMERS
PER_CUSTOMER_TABLES = ("customer_activity", "customer_series", "lag_features", "customer_anomalies")


@pytest.fixture
def scale_server(pg_server):  # noqa: ANN001, ANN201
    """The session's server, with the scale databases dropped afterwards."""
    yield pg_server
    drop_postgres(pg_server.connection_string())


@pytest.mark.postgres
def test_many_databases_one_tick_and_one_backfill_run(tmp_path: Path, scale_server) -> None:
    pg_server = scale_server
    rows = write_sources(SPEC, tmp_path / "tenants", pg_server.connection_string())
    warehouse = tmp_path / "warehouse.duckdb"
    with DagsterInstance.ephemeral() as instance:
        assert extract(
            instance, source(SPEC, tmp_path / "tenants", pg_server.connection_string()), warehouse, SPEC
        ).success
        with duckdb.connect(str(warehouse), read_only=True) as con:
            databases, transactions = con.execute(
                "SELECT count(DISTINCT source_db), count(*) FROM raw.transactions"
            ).fetchone()
            failed = con.execute("SELECT count(*) FROM extraction_log WHERE status <> 'ok'").fetchone()[0]
        assert databases == SPEC.sqlite_dbs + SPEC.pg_dbs and failed == 0
        assert transactions == rows["transactions"], "every source row arrives exactly once"

        assert sensor_tick(instance, warehouse) == SPEC.customers, "one tick registers every customer"
        assert sensor_tick(instance, warehouse) == 0
        keys = customer_keys(instance)
        assert len(keys) == SPEC.customers

        result = backfill(instance, warehouse, keys)
        assert result.success
        [patterns] = result.asset_materializations_for_node("regular_patterns")[:1]
        assert f"{SPEC.customers} customers in this run: plots are inline" in patterns.metadata["plots"].value
        assert not any(
            "data:image/png" in str(value.value)
            for event in result.get_asset_materialization_events()
            for value in event.materialization.metadata.values()
        ), "a run of many customers stores no plot in each partition's event"
        plot_files = Path(patterns.metadata["plot_files"].value).parent.glob("*.png")
        assert len(list(plot_files)) == SPEC.customers, "every customer's plot is a file instead"
        assert len(instance.get_run_records()) == 2, "one extraction and one backfill run"
        with duckdb.connect(str(warehouse), read_only=True) as con:
            for table in PER_CUSTOMER_TABLES:
                customers = con.execute(f"SELECT count(DISTINCT partition_key) FROM {table}").fetchone()[0]
                assert customers == SPEC.customers, table
