"""The detector-evaluation asset: the paper's injection protocol on a sample of customers."""

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from crm_pipeline.assets.customers import every_partition_of
from crm_pipeline.assets.extraction import WAREHOUSE_POOL
from crm_pipeline.assets.features import lag_features
from crm_pipeline.assets.scoring import DETECTION_GROUP, DetectorChoice
from crm_pipeline.detectors.scoring import DetectorSpec, build_detectors
from crm_pipeline.evaluation.protocol import Protocol
from crm_pipeline.evaluation.report import (
    EVALUATION_SPECS,
    NO_SCORES_NOTE,
    PAPER_BEST,
    PLANTED_NOTE,
    best_detector,
    paper_table,
    result_line,
)
from crm_pipeline.evaluation.run import run_evaluation
from crm_pipeline.resources import SourceResource, WarehouseResource


class EvaluationConfig(Config):
    """Launchpad settings of the evaluation (protocol defaults: the paper's)."""

    customers: int = Field(20, description="Seeded sample of customers with enough history.")
    detectors: list[DetectorChoice] = Field(
        default_factory=lambda: [
            DetectorChoice(name=s.name, params=dict(s.params)) for s in EVALUATION_SPECS
        ],
        description="Detectors compared (default: every regressor with every criterion, ARIMA, and the "
        "four unsupervised detectors).",
    )
    measures: list[str] = Field(default_factory=lambda: ["amount_out", "counterparts_out"])
    injections: int = Field(10, description="Anomalies injected one at a time per series (L).")
    train_share: float = Field(0.8, description="Share of each series, oldest first, that trains.")
    seed: int = Field(0, description="Seeds the customer sample and the injections.")
    planted_labels: bool = Field(
        False,
        description="Read the anomaly_labels table of every source database (the demo plants them; "
        "other sources have none): their days are no false positives of the protocol (the strict "
        "precision is reported beside), and anomaly_scores is counted against them.",
    )
    workers: int = Field(-1, description="Processes (-1: one per core).")


@asset(
    group_name=DETECTION_GROUP,
    deps=every_partition_of([lag_features]),
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    metadata={"table": "evaluation_results"},
)
def detector_evaluation(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    warehouse: WarehouseResource,
    source: SourceResource,
) -> MaterializeResult:
    """Soro et al.'s protocol: 80/20 split in time, anomalies e* = e * N(7, 2.5) + 2 * max injected
    into the held-out part one at a time; accuracy, precision and recall per detector, as the
    paper's Table 2 (forecasting) and Table 3 (unsupervised)."""
    specs = [DetectorSpec(d.name, d.params) for d in config.detectors]
    try:
        build_detectors(specs)
        protocol = Protocol(train_share=config.train_share, injections=config.injections, seed=config.seed)
    except ValueError as exc:
        raise Failure(f"detector_evaluation: bad run configuration: {exc}") from exc
    context.log.info("evaluating %d detectors on up to %d customers", len(specs), config.customers)
    with warehouse.open(context.log).connect() as con:
        try:
            run = run_evaluation(
                con,
                specs,
                protocol,
                context.run.run_id,
                config.customers,
                config.measures,
                n_jobs=config.workers,
                progress=lambda done, total: context.log.info("evaluated %d/%d customers", done, total),
                labels_from=source.runners(context.log) if config.planted_labels else None,
            )
        except ValueError as exc:
            raise Failure(f"detector_evaluation: {exc}") from exc
    best = best_detector(run.summary)
    labelled = {}
    if config.planted_labels:
        labelled = {
            "planted_labels": run.labels,
            "best_precision_strict": float(best["precision_strict"]),
            "counting": PLANTED_NOTE,
            "against_planted_labels": MetadataValue.md(
                run.planted.round(3).to_markdown(index=False) if run.planted is not None else NO_SCORES_NOTE
            ),
        }
    context.log.info(result_line(best))
    return MaterializeResult(
        metadata=labelled
        | {
            "dagster/row_count": run.written,
            "customers": len(run.customers),
            "table_2_forecasting": MetadataValue.md(paper_table(run.summary, "forecasting")),
            "table_3_unsupervised": MetadataValue.md(paper_table(run.summary, "unsupervised")),
            "best_detector": f"{best['detector']} on {best['measure']}",
            "best_precision": float(best["precision"]),
            "best_recall": float(best["recall"]),
            "paper": PAPER_BEST,
        }
    )
