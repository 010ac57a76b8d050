"""Jobs, the monthly schedules and the sensor that keeps customer partitions in step."""

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    schedule,
    sensor,
)

from crm_pipeline.assets.customers import customer_activity
from crm_pipeline.assets.deep import deep_anomaly_scores, deep_models
from crm_pipeline.assets.explanations import anomaly_explanations, tree_explanations
from crm_pipeline.assets.extraction import EXTRACTION_GROUP
from crm_pipeline.assets.features import crm_events, customer_series, lag_features, regular_patterns
from crm_pipeline.assets.scoring import anomaly_scores
from crm_pipeline.deployment import JobExecutors
from crm_pipeline.partitions import (
    CUSTOMER_PARTITIONS_NAME,
    customer_partitions,
    monthly_partitions,
)
from crm_pipeline.resources import WarehouseResource
from crm_pipeline.warehouse.store import Warehouse, WarehouseLockedError, table_names

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

SENSOR_LOCK_TIMEOUT_S = 5.0

#: Every customer-partitioned asset, in the order of the data flow.
CUSTOMER_ASSETS = [
    customer_activity,
    customer_series,
    lag_features,
    crm_events,
    regular_patterns,
    anomaly_scores,
    tree_explanations,
]

#: The deep detectors in the order of the data flow: train, score, explain.
DEEP_ASSETS = [deep_models, deep_anomaly_scores, anomaly_explanations]


@dataclass(frozen=True)
class Automation:
    """The jobs and their schedules, built for one deployment's executors."""

    jobs: list["UnresolvedAssetJobDefinition"]
    schedules: list[ScheduleDefinition]


def build_automation(executors: JobExecutors = JobExecutors()) -> Automation:  # noqa: B008 - frozen
    """The three jobs (extraction, per-customer work, deep training) and the monthly schedules."""
    monthly_extraction_job = define_asset_job(
        "monthly_extraction",
        selection=AssetSelection.groups(EXTRACTION_GROUP),
        partitions_def=monthly_partitions,
        description="Extract one month (or a range, in one run) from every tenant database.",
        tags={"crm_pipeline/warehouse": "write"},
        executor_def=executors.default,
    )
    customer_backfill_job = define_asset_job(
        "customer_backfill",
        selection=AssetSelection.assets(*CUSTOMER_ASSETS),
        partitions_def=customer_partitions,
        description="Per-customer work (activity, series, lag features, patterns, anomaly scores and "
        "their SHAP explanations) for one customer or thousands: a backfill is one run that computes "
        "all its customers in bulk.",
        tags={"crm_pipeline/warehouse": "write"},
        executor_def=executors.default,
    )
    deep_training_job = define_asset_job(
        "deep_training",
        selection=AssetSelection.assets(*DEEP_ASSETS),
        partitions_def=customer_partitions,
        description="Train the deep models (GPU when there is one) for one customer or thousands in one "
        "run, score their CRM events with the new versions and explain the flagged ones with SHAP.",
        tags={"crm_pipeline/gpu": "1"},
        executor_def=executors.gpu,
    )
    monthly_schedule = build_schedule_from_partitioned_job(
        monthly_extraction_job,
        hour_of_day=2,
        description="Extracts each month once it has closed (at 02:00 on the 1st).",
    )
    retrain = schedule(
        job=deep_training_job,
        cron_schedule="0 4 2 * *",
        name="monthly_deep_retrain",
        description="Retrains the deep models on every customer's events up to the end of the month "
        "just closed (04:00 on the 2nd, after the monthly extraction), as one run.",
    )(monthly_deep_retrain)
    return Automation(
        [monthly_extraction_job, customer_backfill_job, deep_training_job], [monthly_schedule, retrain]
    )


def month_before(day: date) -> date:
    """The last day of the month before ``day``'s month."""
    return day.replace(day=1) - timedelta(days=1)


def monthly_deep_retrain(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    """One run over every customer partition, trained on events up to the previous month's end."""
    keys = context.instance.get_dynamic_partitions(CUSTOMER_PARTITIONS_NAME)
    if not keys:
        return SkipReason("no customer partitions yet: nothing to train")
    until = month_before(context.scheduled_execution_time.date())
    return RunRequest(
        run_key=f"deep-retrain-{until:%Y-%m}",
        run_config={"ops": {"deep_models": {"config": {"until": until.isoformat()}}}},
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )


def unregistered_customer_keys(warehouse: Warehouse, registered: set[str]) -> list[str]:
    """Customer partition keys in the warehouse that Dagster does not know yet, in order."""
    if not Path(warehouse.path).exists():
        return []
    with warehouse.connect(read_only=True) as con:
        tables = table_names(con)
        if "customer_keys" not in tables:
            return []
        keys = con.execute("SELECT partition_key FROM customer_keys ORDER BY added_at, 1").fetchall()
    return [k for (k,) in keys if k not in registered]


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a customer partition for every customer the warehouse has a key for.",
)
def customer_partitions_sensor(
    context: SensorEvaluationContext, warehouse: WarehouseResource
) -> SensorResult | SkipReason:
    """Reads ``customer_keys`` read-only; a busy warehouse just means trying next tick."""
    registered = set(context.instance.get_dynamic_partitions(CUSTOMER_PARTITIONS_NAME))
    store = Warehouse(warehouse.path, lock_timeout_s=SENSOR_LOCK_TIMEOUT_S)
    try:
        new_keys = unregistered_customer_keys(store, registered)
    except WarehouseLockedError:
        return SkipReason(f"warehouse {warehouse.path} is busy with a writer; retrying next tick")
    if not new_keys:
        return SkipReason(f"all {len(registered)} customer partitions are registered")
    context.log.info("adding %d customer partitions", len(new_keys))
    return SensorResult(
        dynamic_partitions_requests=[customer_partitions.build_add_request(new_keys)],
        cursor=str(len(registered) + len(new_keys)),
    )
