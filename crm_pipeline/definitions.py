"""Dagster definitions: every asset, job, schedule, sensor and resource in one place."""

from __future__ import annotations

from dagster import Definitions

from crm_pipeline.assets.evaluation import detector_evaluation
from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.automation import (
    CUSTOMER_ASSETS,
    DEEP_ASSETS,
    build_automation,
    customer_partitions_sensor,
)
from crm_pipeline.deployment import job_executors
from crm_pipeline.resources import ComputeDeviceResource, SourceResource, WarehouseResource
from crm_pipeline.settings import load_settings


def build_definitions(settings: dict | None = None) -> Definitions:
    """Definitions over the given settings (default: ``$CRM_PIPELINE_CONFIG`` or the demo)."""
    settings = settings or load_settings()
    automation = build_automation(job_executors(settings.get("execution")))
    return Definitions(
        assets=[*raw_assets, *CUSTOMER_ASSETS, *DEEP_ASSETS, detector_evaluation],
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=[customer_partitions_sensor],
        resources={
            "source": SourceResource.from_settings(settings["source"]),
            "warehouse": WarehouseResource(**settings["warehouse"]),
            "compute": ComputeDeviceResource(**settings.get("compute", {})),
        },
    )


defs = build_definitions()
