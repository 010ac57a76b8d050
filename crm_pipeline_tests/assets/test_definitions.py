"""The Dagster graph materialized in-process: months, backfills, sensor, schedule, checks."""

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_schedule_context, build_sensor_context, materialize

from crm_pipeline.assets.customers import customer_activity
from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.assets.features import (
    PatternConfig,
    crm_events,
    customer_series,
    lag_features,
    regular_patterns,
)
from crm_pipeline.automation import customer_partitions_sensor
from crm_pipeline.definitions import build_definitions
from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME
from crm_pipeline.warehouse.keys import customer_file_name
from crm_pipeline_tests.helpers import count, execute_sqlite, range_tags

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def defs(tmp_path, sqlite_tenants):
    settings = {
        "warehouse": {"path": str(tmp_path / "w.duckdb"), "lock_timeout_s": 30},
        "source": {"kind": "sqlite", "sqlite_dir": str(sqlite_tenants)},
        "partitions": {"start": "2008-01-01"},
    }
    return build_definitions(settings)


def run_month(defs, instance, month: str):
    return materialize(raw_assets, partition_key=month, instance=instance, resources=defs.resources)


def checks(result) -> dict[tuple[str, str], bool]:
    return {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def test_two_months_then_rerun_without_duplicates(defs, instance):
    wh = defs.resources["warehouse"].open()
    assert run_month(defs, instance, "2019-01-01").success
    result = run_month(defs, instance, "2019-02-01")
    assert result.success
    assert all(checks(result).values()) and len(checks(result)) == 2 * len(raw_assets)
    totals = {
        t: count(wh, f"SELECT count(*) FROM raw.{t}") for t in ("transactions", "quotations", "customers")
    }
    assert totals["transactions"] > 0 and totals["customers"] == 9
    assert run_month(defs, instance, "2019-01-01").success
    assert {t: count(wh, f"SELECT count(*) FROM raw.{t}") for t in totals} == totals
    mats = result.asset_materializations_for_node("raw_transactions")
    md = mats[0].metadata
    assert md["databases"].value == 3 and md["rows_inserted"].value > 0
    assert "per_database" in md and "preview" in md


def test_the_first_month_names_the_rows_dated_before_it(defs, instance, sqlite_tenants):
    """partitions.start is 2008-01: a row of 2007 is in no partition, and the first month says so."""
    execute_sqlite(
        sqlite_tenants / "tenant_02.sqlite",
        "INSERT INTO transactions VALUES ('old', 'C00001', '2007-12-31', 5, 'CP1', 'in')",
    )
    first = run_month(defs, instance, "2008-01-01").asset_materializations_for_node("raw_transactions")
    assert first[0].metadata["rows_before_first_partition"].value == {"tenant_02": 1}
    later = run_month(defs, instance, "2019-01-01").asset_materializations_for_node("raw_transactions")
    assert "rows_before_first_partition" not in later[0].metadata


def test_single_run_backfill_of_a_range(defs, instance, small_tenants):
    result = materialize(
        raw_assets,
        instance=instance,
        resources=defs.resources,
        tags=range_tags("2018-01-01", "2019-06-01"),
    )
    assert result.success
    expected = sum(len(t.tables["transactions"].rows) for t in small_tenants)
    assert count(defs.resources["warehouse"].open(), "SELECT count(*) FROM raw.transactions") == expected


def test_sensor_adds_customer_partitions_then_customer_backfill(defs, instance):
    assert run_month(defs, instance, "2019-01-01").success
    resources = {"warehouse": defs.resources["warehouse"]}
    with build_sensor_context(instance=instance, resources=resources) as ctx:
        result = customer_partitions_sensor(ctx)
    [request] = result.dynamic_partitions_requests
    assert len(request.partition_keys) == 9 and "tenant_01.C00001" in request.partition_keys
    instance.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, request.partition_keys)
    with build_sensor_context(instance=instance, resources=resources) as ctx:
        assert "registered" in customer_partitions_sensor(ctx).skip_message

    keys = instance.get_dynamic_partitions(CUSTOMER_PARTITIONS_NAME)[:3]
    tags = range_tags(keys[0], keys[2])
    customer_assets = [customer_activity, customer_series, lag_features, crm_events, regular_patterns]
    runs = []
    for plot_files in (False, True):  # a re-run replaces, never duplicates
        config = {"ops": {"regular_patterns": {"config": {"plot_files": plot_files}}}}
        result = materialize(
            customer_assets, instance=instance, resources=defs.resources, tags=tags, run_config=config
        )
        assert result.success
        assert all(checks(result).values()) and len(checks(result)) == 5
        runs.append(result.asset_materializations_for_node("regular_patterns")[0].metadata)
    without_files = runs[0]  # the inline plots are drawn in the step, and no file is named
    assert (
        without_files["plots"].value.count("data:image/png;base64,") == 3
        and "plot_files" not in without_files
    )
    wh = defs.resources["warehouse"].open()
    assert count(wh, "SELECT count(*) FROM customer_activity") == 3
    assert count(wh, "SELECT count(*) FROM customer_activity WHERE transactions > 0") == 3
    assert count(wh, "SELECT count(DISTINCT partition_key) FROM lag_features") == 3
    dupes = (
        "SELECT count(*) FROM (SELECT partition_key, measure, day FROM lag_features "
        "GROUP BY ALL HAVING count(*) > 1)"
    )
    assert count(wh, dupes) == 0
    with_crm = (
        "SELECT count(DISTINCT k.partition_key) FROM raw.opportunities o "
        "JOIN customer_keys k USING (source_db, customer_id) WHERE k.partition_key IN (?, ?, ?)"
    )
    assert count(wh, "SELECT count(DISTINCT partition_key) FROM crm_events") == count(wh, with_crm, keys) > 0
    assert count(wh, "SELECT count(*) FROM crm_events WHERE trading_currency_code = -1") == 0
    events_md = result.asset_materializations_for_node("crm_events")[0].metadata
    by_eur = (
        "SELECT count(*) FROM crm_events "
        "WHERE quotation_subtotal IS NOT NULL AND (trading_currency = 'EUR') = ?"
    )
    assert count(wh, by_eur, [True]) > 0  # EUR quotations, converted at 1, are not counted as demo rates
    assert events_md["subtotals_at_demo_rates"].value == count(wh, by_eur, [False])  # fx_rates is empty
    md = result.asset_materializations_for_node("customer_series")[0].metadata
    assert md["customers"].value == 3 and "preview" in md
    patterns_md = result.asset_materializations_for_node("regular_patterns")[0].metadata
    assert patterns_md["plots"].value.count("data:image/png;base64,") == 3
    index = Path(patterns_md["plot_files"].value)  # every customer's plot as a file, and an index
    assert index.parent == Path(wh.path).resolve().parent / "reports" / "patterns"
    plotted = sorted(p.name for p in index.parent.glob("*.png"))
    assert plotted == sorted(customer_file_name(k, ".png") for k in keys)
    assert all(k in index.read_text() for k in keys)
    # a monthly trend needs at least one complete calendar month of history
    with_a_full_month = (
        "SELECT count(*) FROM (SELECT min(period_start) AS f, max(period_start) AS l FROM customer_series "
        "WHERE grain = 'day' GROUP BY partition_key) WHERE CASE WHEN day(f) = 1 THEN f "
        "ELSE date_trunc('month', f) + INTERVAL 1 MONTH END + INTERVAL 1 MONTH <= l + INTERVAL 1 DAY"
    )
    trended = count(wh, "SELECT count(DISTINCT partition_key) FROM pattern_monthly_trend")
    assert trended == count(wh, with_a_full_month)


def test_schedule_requests_the_month_that_just_closed(defs):
    schedule = defs.get_schedule_def("monthly_extraction_schedule")
    context = build_schedule_context(scheduled_execution_time=datetime(2019, 3, 1, 2, 0))
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2019-02-01"


def test_repository_loads_jobs_and_dagster_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    defs = build_definitions()
    assert {j.name for j in defs.get_repository_def().get_all_jobs()} >= {
        "monthly_extraction",
        "customer_backfill",
    }
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as inst:
        assert inst.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
        assert Path(inst.storage_directory()).is_relative_to(tmp_path)
        limits = inst.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "crm_pipeline/warehouse", "value": "write", "limit": 1} in limits


def test_missing_source_folder_fails_the_run_with_its_name(tmp_path, instance):
    defs = build_definitions(
        {
            "warehouse": {"path": str(tmp_path / "w.duckdb")},
            "source": {"kind": "sqlite", "sqlite_dir": str(tmp_path / "missing")},
            "partitions": {"start": "2008-01-01"},
        }
    )
    result = materialize(raw_assets[:1], instance=instance, resources=defs.resources, raise_on_error=False)
    assert not result.success
    assert "missing" in str(result.get_step_failure_events()[0].event_specific_data.error)


def test_pattern_settings_that_make_no_sense_are_refused_before_any_write(defs, instance):
    with pytest.raises(Exception, match="greater than or equal to 0"):
        PatternConfig(plots=-1)
    instance.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, ["tenant_01.C00001"])
    result = materialize(
        [regular_patterns],
        instance=instance,
        resources=defs.resources,
        partition_key="tenant_01.C00001",
        run_config={"ops": {"regular_patterns": {"config": {"workers": 0}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "workers must be -1 (one per core) or a number of processes, not 0" in str(
        failure.event_specific_data
    )
    assert not Path(defs.resources["warehouse"].path).exists()  # refused before the warehouse is opened
