"""The SHAP anomaly reports: which columns made each flagged CRM event (deep detectors) or
day (classical tree detectors) anomalous."""

from collections.abc import Callable, Sequence

import duckdb
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue
from pydantic import Field

from crm_pipeline.assets.customers import customer_asset, log_progress
from crm_pipeline.assets.deep import DEEP_GROUP, deep_anomaly_scores, device_of
from crm_pipeline.assets.metadata import inline_plots, preview_markdown, report_folder
from crm_pipeline.assets.scoring import DEFAULT_DETECTORS, DETECTION_GROUP, DetectorChoice, anomaly_scores
from crm_pipeline.detectors.deep.models import MODELS
from crm_pipeline.detectors.scoring import DetectorSpec, build_detectors
from crm_pipeline.explain.report import (
    TOP_EVENTS_SQL,
    column_importance,
    customer_png,
    importance_png,
    write_report,
)
from crm_pipeline.explain.run import ExplanationRun, explain_customers, explain_tree_customers
from crm_pipeline.explain.trees import EXPLAINED_OUTPUT, check_explainable
from crm_pipeline.partitions import partition_label
from crm_pipeline.patterns.plots import png_markdown
from crm_pipeline.resources import ComputeDeviceResource, WarehouseResource
from crm_pipeline.warehouse.store import Warehouse


class ExplanationConfig(Config):
    """Launchpad settings of an explanation run."""

    models: list[str] = Field(
        default_factory=lambda: sorted(MODELS), description="Deep detectors to explain."
    )
    min_severity: int = Field(
        1, description="Explain events that reached at least this many thresholds (1: every flagged event)."
    )
    per_customer: int | None = Field(
        None, description="At most this many events per customer, the highest scores first (empty: all)."
    )
    background: int = Field(50, description="Normal windows of the same customer as SHAP's background.")
    seed: int = Field(0, description="Seed of the background sample (and of expected gradients).")


@customer_asset("shap_values", DEEP_GROUP, [deep_anomaly_scores])
def anomaly_explanations(
    context: AssetExecutionContext,
    config: ExplanationConfig,
    warehouse: WarehouseResource,
    compute: ComputeDeviceResource,
) -> MaterializeResult:
    """SHAP values per input column and look-back step of each customer's flagged events
    (DeepExplainer for the CNN, expected gradients for the LSTM), a global and a per-customer
    report in the metadata, and HTML reports (all customers, and a page each) beside the warehouse."""
    keys = list(context.partition_keys)
    unknown = sorted(set(config.models) - set(MODELS))
    per_customer = config.per_customer if config.per_customer is not None else 1
    if unknown or config.min_severity < 1 or per_customer < 1 or config.background < 1:
        raise Failure(
            "anomaly_explanations: bad run configuration: models must be among "
            f"{sorted(MODELS)} (got {unknown or config.models}); min_severity, per_customer and "
            "background must be at least 1"
        )
    device = device_of(compute, "anomaly_explanations")
    context.log.info("anomaly_explanations for %s: %s", partition_label(keys), ", ".join(config.models))
    wh = warehouse.open(context.log)
    with wh.connect() as con:
        runs = [
            explain_customers(
                con, keys, model, device, context.run.run_id, config.min_severity, config.per_customer,
                config.background, config.seed, log_progress(context, f"anomaly_explanations {model}"),
            )
            for model in config.models
        ]  # fmt: skip
        metadata = report_metadata(con, wh, keys, context.run.run_id, runs)
    log_runs(context, runs)
    return MaterializeResult(metadata=metadata)


class TreeExplanationConfig(Config):
    """Launchpad settings of the classical detectors' explanation run."""

    detectors: list[DetectorChoice] = Field(
        default_factory=lambda: [DetectorChoice(name=n) for n in DEFAULT_DETECTORS if n in EXPLAINED_OUTPUT],
        description="Tree detectors to explain, with the parameters that scored (one of: "
        f"{', '.join(sorted(EXPLAINED_OUTPUT))}).",
    )
    per_customer: int = Field(10, description="At most this many days per customer and measure.")
    workers: int = Field(-1, description="Processes that share the series (-1: one per core).")


@customer_asset("shap_values", DETECTION_GROUP, [anomaly_scores])
def tree_explanations(
    context: AssetExecutionContext, config: TreeExplanationConfig, warehouse: WarehouseResource
) -> MaterializeResult:
    """SHAP values per lag feature of each customer's most anomalous flagged days of the tree
    detectors (TreeExplainer, exact: a forecaster's forecast, an isolation forest's path
    length), with the same reports as the deep detectors' explanations."""
    keys = list(context.partition_keys)
    specs = [DetectorSpec(d.name, d.params) for d in config.detectors]
    try:
        for spec in specs:
            check_explainable(spec.name)
        build_detectors(specs)
        if config.per_customer < 1:
            raise ValueError(f"per_customer must be at least 1, got {config.per_customer}")
    except ValueError as exc:
        raise Failure(f"tree_explanations: bad run configuration: {exc}") from exc
    context.log.info("tree_explanations for %s: %s", partition_label(keys), ", ".join(s.name for s in specs))
    wh = warehouse.open(context.log)
    with wh.connect() as con:
        try:
            runs = [
                explain_tree_customers(
                    con, keys, spec, context.run.run_id, config.per_customer, n_jobs=config.workers,
                    progress=series_progress(context, spec.name),
                )
                for spec in specs
            ]  # fmt: skip
        except ValueError as exc:
            raise Failure(f"tree_explanations: {exc}") from exc
        metadata = report_metadata(con, wh, keys, context.run.run_id, runs)
    log_runs(context, runs)
    return MaterializeResult(metadata=metadata)


def report_metadata(
    con: duckdb.DuckDBPyConnection,
    wh: Warehouse,
    keys: Sequence[str],
    run_id: str,
    runs: Sequence[ExplanationRun],
) -> dict[str, object]:
    """Counts, mean |SHAP| per column (table and plot), the top events, the HTML report and a
    page per customer beside the warehouse and, for one customer, its most anomalous explained
    event per detector as a plot."""
    importance = column_importance(con)
    metadata: dict[str, object] = {
        "dagster/row_count": sum(r.rows for r in runs),
        "events_explained": MetadataValue.json({r.detector: r.events for r in runs}),
        "seconds": MetadataValue.json({r.detector: round(r.seconds, 2) for r in runs}),
        "column_importance": MetadataValue.md(
            importance.to_markdown(index=False) if not importance.empty else "_no flagged events_"
        ),
        "top_explained": preview_markdown(con, TOP_EVENTS_SQL, []),
    }
    if not importance.empty:
        plot = importance_png(importance, f"what drives the anomalies of {partition_label(keys)}")
        metadata["importance_plot"] = inline_plots(keys, lambda: png_markdown(plot, "mean |SHAP| per column"))
        folder = report_folder(wh.path, "anomalies", run_id[:8])
        metadata["report"] = MetadataValue.path(str(write_report(con, folder, importance, plot)))
        metadata["customer_reports"] = MetadataValue.path(str(folder / "customers"))
        if len(keys) == 1:
            metadata["customer_plot"] = MetadataValue.md(png_markdown(customer_png(con, keys[0]), keys[0]))
    return metadata


def series_progress(context: AssetExecutionContext, detector: str) -> Callable[[int, int], None]:
    return lambda done, total: context.log.info(
        "tree_explanations %s: %d/%d series explained", detector, done, total
    )


def log_runs(context: AssetExecutionContext, runs: Sequence[ExplanationRun]) -> None:
    for run in runs:
        versions = ", ".join(run.versions) or "not scored"
        context.log.info("%s (%s): %d explained in %.1fs", run.detector, versions, run.events, run.seconds)
