"""Deep detectors in Dagster: a training asset routed to a GPU, and a scoring asset that writes
the same ``anomaly_scores`` table as the classical detectors.

``deep_models`` is in the ``gpu`` pool (one GPU step at a time) and carries the Kubernetes
``nvidia.com/gpu`` limit; it opens the warehouse only to read events and to record versions,
so it does not hold DuckDB's single writer lock while it trains. ``deep_anomaly_scores`` is an
ordinary warehouse step in the ``duckdb`` pool.
"""

from collections.abc import Callable
from datetime import date

import torch
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from crm_pipeline.assets.customers import customer_asset
from crm_pipeline.assets.features import crm_events
from crm_pipeline.assets.metadata import inline_plots, preview_markdown, rows_markdown
from crm_pipeline.deployment import GPU_QUEUE
from crm_pipeline.detectors.deep.device import DeviceUnavailableError
from crm_pipeline.detectors.deep.fit import MODES, DeepSettings
from crm_pipeline.detectors.deep.models import MODELS
from crm_pipeline.detectors.deep.plots import loss_curve_png
from crm_pipeline.detectors.deep.run import MEASURE, score_and_write, train_and_register
from crm_pipeline.partitions import customer_partitions, partition_label
from crm_pipeline.patterns.plots import png_markdown
from crm_pipeline.resources import ComputeDeviceResource, WarehouseResource
from crm_pipeline.warehouse.customer_tables import RUN_ROWS
from crm_pipeline.warehouse.store import scalar

DEEP_GROUP = "deep_detection"
GPU_POOL = "gpu"
#: What routes the training step to a GPU: a GPU limit on its pod under the k8s executor, the
#: ``gpu`` queue under Celery (docs/operations.md; node selectors live in the deployment's settings).
GPU_OP_TAGS = {
    "dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}},
    "dagster-celery/queue": GPU_QUEUE,
}


class DeepTrainingConfig(Config):
    """Launchpad settings of a training run."""

    models: list[str] = Field(
        default_factory=lambda: sorted(MODELS),
        description=f"Which models, from: {', '.join(sorted(MODELS))}.",
    )
    mode: str = Field(
        "per_customer", description=f"{' | '.join(MODES)}: a model per customer, or one for all of them."
    )
    lookback: int = Field(10, description="Events in the look-back window.")
    epochs: int = Field(30, description="Passes over each customer's windows.")
    batch_size: int = Field(0, description="Windows per step (0: 32 per customer, 1024 for a global model).")
    learning_rate: float = Field(1e-3, description="Adam's learning rate.")
    seed: int = Field(0, description="Same seed, same weights (on the CPU; within tolerance on CUDA).")
    thresholds: list[float] = Field(
        default_factory=lambda: [0.4, 0.6], description="Ascending score levels: flag at the first."
    )
    until: str | None = Field(
        None, description="Train on events up to this date (YYYY-MM-DD); the monthly retrain sets it."
    )

    def settings(self) -> list[DeepSettings]:
        """One validated ``DeepSettings`` per model; a bad value raises ``ValueError``."""
        return [
            DeepSettings(
                model=model,
                mode=self.mode,
                lookback=self.lookback,
                epochs=self.epochs,
                batch_size=self.batch_size or None,
                learning_rate=self.learning_rate,
                seed=self.seed,
                thresholds=tuple(self.thresholds),
            )
            for model in self.models
        ]


@asset(
    partitions_def=customer_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    group_name=DEEP_GROUP,
    kinds={"pytorch", "duckdb"},
    deps=[crm_events],
    metadata={"table": "model_registry"},
)
def deep_models(
    context: AssetExecutionContext,
    config: DeepTrainingConfig,
    warehouse: WarehouseResource,
    compute: ComputeDeviceResource,
) -> MaterializeResult:
    """The CRM paper's deep models trained on the run's customers' encoded events: a new
    registered version per model (weights under ``models/`` beside the warehouse)."""
    keys = list(context.partition_keys)
    try:
        all_settings = config.settings()
        until = date.fromisoformat(config.until) if config.until else None
    except ValueError as exc:
        raise Failure(f"deep_models: bad run configuration: {exc}") from exc
    device = device_of(compute, "deep_models")
    context.log.info(
        "deep_models for %s: %s (%s) on %s, events up to %s",
        partition_label(keys), ", ".join(config.models), config.mode, device, until or "now",
    )  # fmt: skip
    wh = warehouse.open(context.log)
    runs, versions = {}, []
    for settings in all_settings:
        try:
            run = train_and_register(
                wh, keys, settings, device, context.run.run_id, until, compute.mixed_precision,
                compute.gpu_memory_budget_gb, _epoch_logger(context, settings.model),
            )  # fmt: skip
        except ValueError as exc:
            raise Failure(f"deep_models: {settings.model}: {exc}") from exc
        runs[settings.model] = run
        log = run.trained.log
        versions.append(
            {"model": settings.model, "version": run.version, "customers": len(run.trained.customers),
             "skipped": len(run.trained.skipped), "windows": run.windows,
             "final_loss": round(log.epoch_losses[-1], 6), "seconds": round(run.trained.seconds, 1),
             "windows_per_s": round(log.windows_per_s)}
        )  # fmt: skip
        context.log.info("%s: registered version %s (%s)", settings.model, run.version, run.path)
    skipped = next(iter(runs.values())).trained.skipped
    metadata = {
        "versions": MetadataValue.md(rows_markdown(versions)),
        "device": str(device),
        "customers": len(keys),
        "skipped_customers": len(skipped),
        "loss_curve": inline_plots(
            keys,
            lambda: png_markdown(
                loss_curve_png({m: r.trained.log.epoch_losses for m, r in runs.items()}), "training loss"
            ),
        ),
        "epoch_losses": MetadataValue.json({m: r.trained.log.epoch_losses for m, r in runs.items()}),
    }
    if skipped:
        metadata["skipped"] = MetadataValue.md(
            rows_markdown([{"customer": k, "reason": r} for k, r in sorted(skipped.items())][:20])
        )
    return MaterializeResult(metadata=metadata)


def device_of(compute: ComputeDeviceResource, asset_name: str) -> torch.device:
    """The configured device, or a Failure saying what is missing before any work starts."""
    try:
        return compute.torch_device()
    except (ValueError, DeviceUnavailableError) as exc:
        raise Failure(f"{asset_name}: {exc}") from exc


def _epoch_logger(context: AssetExecutionContext, model: str) -> Callable[[str], None]:
    """Training progress (epoch, loss, throughput) into the run log, prefixed by the model."""
    return lambda message: context.log.info("%s %s", model, message)


class DeepScoringConfig(Config):
    """Launchpad settings of a deep scoring run."""

    models: list[str] = Field(
        default_factory=lambda: sorted(MODELS), description="Which trained models score."
    )
    version: str | None = Field(
        None,
        description="A registered version (one model only); default: each customer's newest version.",
    )


TOP_SQL = (
    "SELECT partition_key, record_id, day, detector, round(score, 3) AS score, "
    "round(confidence, 4) AS confidence, severity " + RUN_ROWS.format(table="anomaly_scores")
    + f" WHERE flag AND measure = '{MEASURE}' ORDER BY severity DESC, confidence DESC, score DESC"
)  # fmt: skip
FLAGGED_SQL = (
    "SELECT count(*) " + RUN_ROWS.format(table="anomaly_scores") + f" WHERE flag AND measure = '{MEASURE}'"
)
PER_MODEL_SQL = (
    "SELECT detector, model_version, count(*) AS events, count(*) FILTER (WHERE severity >= 1) AS flagged, "
    "count(*) FILTER (WHERE severity >= 2) AS severe " + RUN_ROWS.format(table="anomaly_scores")
    + f" WHERE measure = '{MEASURE}' GROUP BY ALL ORDER BY 1"
)  # fmt: skip


@customer_asset("anomaly_scores, customer_anomalies", DEEP_GROUP, [deep_models])
def deep_anomaly_scores(
    context: AssetExecutionContext,
    config: DeepScoringConfig,
    warehouse: WarehouseResource,
    compute: ComputeDeviceResource,
) -> MaterializeResult:
    """Every CRM event of the run's customers scored by the deep models (each customer by the
    newest registered version trained on it): score 0..1, severity (thresholds reached),
    confidence, in ``anomaly_scores``."""
    keys = list(context.partition_keys)
    if config.version and len(config.models) != 1:
        raise Failure("deep_anomaly_scores: a version names one model's version: choose one model")
    unknown = sorted(set(config.models) - set(MODELS))
    if unknown:
        raise Failure(f"deep_anomaly_scores: unknown model(s) {unknown}; known: {sorted(MODELS)}")
    device = device_of(compute, "deep_anomaly_scores")
    unscored: dict[str, str] = {}
    with warehouse.open(context.log).connect() as con:
        written = 0
        for model in config.models:
            try:
                versions, rows, missing = score_and_write(
                    con, keys, model, device, context.run.run_id, config.version, compute.gpu_memory_budget_gb
                )
            except (LookupError, FileNotFoundError, ValueError) as exc:
                raise Failure(f"deep_anomaly_scores: {model}: {exc}") from exc
            context.log.info(
                "%s (version %s): %d events scored, %d customers not scored",
                model, ", ".join(versions), rows, len(missing),
            )  # fmt: skip
            written += rows
            unscored |= {f"{k} ({model})": r for k, r in missing.items()}
        metadata = {
            "dagster/row_count": written,
            "customers": len(keys),
            "flagged": scalar(con, FLAGGED_SQL),
            "per_model": preview_markdown(con, PER_MODEL_SQL, []),
            "top_anomalies": preview_markdown(con, TOP_SQL, []),
            "unscored_customers": len(unscored),
        }
    if unscored:
        metadata["unscored"] = MetadataValue.md(
            rows_markdown([{"customer": k, "reason": r} for k, r in sorted(unscored.items())][:20])
        )
    return MaterializeResult(metadata=metadata)
