"""The anomaly-scoring asset: every chosen detector on every customer of the run."""

from typing import Any

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult
from pydantic import Field

from crm_pipeline.assets.customers import customer_asset, log_progress
from crm_pipeline.assets.features import lag_features
from crm_pipeline.assets.metadata import preview_markdown, zero_check
from crm_pipeline.detectors.plots import anomaly_png
from crm_pipeline.detectors.registry import DETECTORS
from crm_pipeline.detectors.scoring import DetectorSpec, build_detectors, score_customers
from crm_pipeline.features.lag_sql import MEASURES
from crm_pipeline.partitions import partition_label
from crm_pipeline.patterns.plots import png_markdown
from crm_pipeline.resources import WarehouseResource
from crm_pipeline.warehouse.customer_tables import BATCH_CUSTOMERS, RUN_ROWS
from crm_pipeline.warehouse.store import scalar

DETECTION_GROUP = "detection"
#: The default set: the detectors that did best on the demo's planted anomalies, plus one
#: cheap forecaster. Every other detector of the registry is one launchpad line away.
DEFAULT_DETECTORS = ("kmeans", "agglomerative", "isolation_forest", "decision_tree")


class DetectorChoice(Config):
    """One detector of the run: a registry name and constructor parameters."""

    name: str = Field(description=f"One of: {', '.join(sorted(DETECTORS))}.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Constructor parameters, e.g. {criterion: multiplicative, tau: 2.0} for a "
        "forecaster or {p: 5} for k-means. Unknown parameters fail the run before any work.",
    )


class ScoringConfig(Config):
    """Launchpad settings of the scoring run."""

    detectors: list[DetectorChoice] = Field(
        default_factory=lambda: [DetectorChoice(name=n) for n in DEFAULT_DETECTORS],
        description="Which detectors score each customer, with their parameters.",
    )
    measures: list[str] = Field(
        default_factory=lambda: ["amount_out", "counterparts_out"],
        description=f"Series scored per customer, from: {', '.join(MEASURES)}.",
    )
    history_days: int = Field(730, description="Days of each customer's history scored (the newest).")
    short_histories: bool = Field(
        False, description="Also score customers that customer_history marks as too short (noisy)."
    )
    workers: int = Field(-1, description="Processes that share the customers (-1: one per core).")
    batch_customers: int = Field(
        BATCH_CUSTOMERS,
        gt=0,
        description="Customers loaded, scored and committed together: memory follows the batch, and a "
        "failed run keeps the batches it finished.",
    )


TOP_SQL = (
    "SELECT partition_key, measure, day, detector, round(score, 3) AS score, "
    "round(threshold, 3) AS threshold " + RUN_ROWS.format(table="anomaly_scores") + " WHERE flag "
    "ORDER BY score / nullif(threshold, 0) DESC NULLS LAST"
)
PER_DETECTOR_SQL = (
    "SELECT detector, measure, count(*) AS series, sum(anomalies) AS anomalies, "
    "count(error) AS failed, round(avg(silhouette), 3) AS mean_silhouette "
    + RUN_ROWS.format(table="customer_anomalies")
    + " GROUP BY ALL ORDER BY 1, 2"
)
FAILED_SQL = (
    "SELECT partition_key, measure, detector, error "
    + RUN_ROWS.format(table="customer_anomalies")
    + " WHERE error IS NOT NULL ORDER BY 1, 2, 3"
)
DUPLICATE_SCORES_SQL = (
    "SELECT count(*) FROM (SELECT partition_key, measure, day, detector, record_id "
    + RUN_ROWS.format(table="anomaly_scores")
    + " GROUP BY ALL HAVING count(*) > 1)"
)


@customer_asset(
    "anomaly_scores, customer_anomalies", DETECTION_GROUP, [lag_features], checks=["no_duplicate_scores"]
)
def anomaly_scores(
    context: AssetExecutionContext, config: ScoringConfig, warehouse: WarehouseResource
) -> MaterializeResult:
    """Per customer, measure and day: each detector's score, threshold and flag; per customer and
    detector: a summary with cluster quality, or why the series could not be scored."""
    keys = list(context.partition_keys)
    specs = [DetectorSpec(d.name, d.params) for d in config.detectors]
    try:
        build_detectors(specs)
    except ValueError as exc:
        raise Failure(f"anomaly_scores: bad run configuration: {exc}") from exc
    context.log.info(
        "anomaly_scores for %s: %s on %s",
        partition_label(keys),
        ", ".join(d.name for d in specs),
        config.measures,
    )
    with warehouse.open(context.log).connect() as con:
        totals = score_customers(
            con,
            keys,
            specs,
            context.run.run_id,
            measures=config.measures,
            history_days=config.history_days,
            short_histories=config.short_histories,
            n_jobs=config.workers,
            batch_size=config.batch_customers,
            progress=log_progress(context, "anomaly_scores"),
        )
        duplicates = scalar(con, DUPLICATE_SCORES_SQL)
        metadata = {
            "dagster/row_count": totals["anomaly_scores"],
            "customers": len(keys),
            "anomalies": scalar(
                con, "SELECT count(*) " + RUN_ROWS.format(table="anomaly_scores") + " WHERE flag"
            ),
            "failed_series": totals["failed_series"],
            "per_detector": preview_markdown(con, PER_DETECTOR_SQL, []),
            "top_anomalies": preview_markdown(con, TOP_SQL, []),
        }
        if totals["failed_series"]:
            metadata["failures"] = preview_markdown(con, FAILED_SQL, [])
            context.log.warning(
                "%d series could not be scored: see the failures metadata", totals["failed_series"]
            )
        if len(keys) == 1:
            for measure in config.measures:
                metadata[f"plot_{measure}"] = png_markdown(
                    anomaly_png(con, keys[0], measure), f"{keys[0]} {measure}"
                )
    return MaterializeResult(
        metadata=metadata, check_results=[zero_check("no_duplicate_scores", duplicates, "duplicates")]
    )
