"""Dagster definitions: every asset, job, schedule, sensor and resource in one place."""

from __future__ import annotations

from dagster import Definitions

from crm_pipeline.assets.evaluation import detector_evaluation
from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.automation import (
    CUSTOMER_ASSETS,
    DEEP_ASSETS,
    customer_backfill_job,
    customer_partitions_sensor,
    deep_training_job,
    monthly_deep_retrain,
    monthly_extraction_job,
    monthly_schedule,
)
from crm_pipeline.resources import ComputeDeviceResource, SourceResource, WarehouseResource
from crm_pipeline.settings import load_settings


def build_definitions(settings: dict | None = None) -> Definitions:
    """Definitions over the given settings (default: ``$CRM_PIPELINE_CONFIG`` or the demo)."""
    settings = settings or load_settings()
    return Definitions(
        assets=[*raw_assets, *CUSTOMER_ASSETS, *DEEP_ASSETS, detector_evaluation],
        jobs=[monthly_extraction_job, customer_backfill_job, deep_training_job],
        schedules=[monthly_schedule, monthly_deep_retrain],
        sensors=[customer_partitions_sensor],
        resources={
            "source": SourceResource(**settings["source"]),
            "warehouse": WarehouseResource(**settings["warehouse"]),
            "compute": ComputeDeviceResource(**settings.get("compute", {})),
        },
    )


defs = build_definitions()
