"""The deep detectors end to end, without Dagster: train and register a model version for a
set of customers, or score their events with a registered version into ``anomaly_scores``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from crm_pipeline.detectors.deep.artifacts import (
    check_columns,
    load_model,
    models_dir,
    newest_versions,
    registered_version,
    save_model,
)
from crm_pipeline.detectors.deep.data import DEEP_COLUMNS, load_events
from crm_pipeline.detectors.deep.device import measure_budget
from crm_pipeline.detectors.deep.fit import DeepSettings, EventScores, TrainedModel, score_events, train_deep
from crm_pipeline.detectors.scoring import SCORE_COLUMNS, SUMMARY_COLUMNS, TABLES_SQL
from crm_pipeline.warehouse.customer_tables import staged_transaction
from crm_pipeline.warehouse.store import Warehouse

MEASURE = "crm_events"


@dataclass(frozen=True)
class TrainingRun:
    """A registered model version and what went into it."""

    version: str
    path: Path
    trained: TrainedModel
    windows: int
    events: int


def train_and_register(
    warehouse: Warehouse,
    partition_keys: Sequence[str],
    settings: DeepSettings,
    device: torch.device,
    run_id: str,
    until: date | None = None,
    mixed_precision: bool = True,
    gpu_memory_budget_gb: float = 8.0,
    progress: Callable[[str], None] | None = None,
) -> TrainingRun:
    """Train ``settings`` on the customers' events up to ``until`` and record the new version
    (weights under ``models/`` beside the warehouse). The warehouse is open only to read the
    events and to record the version, never while the model trains: other steps may write."""
    with warehouse.connect(read_only=True) as con:
        customers = load_events(con, partition_keys, until)
    if not customers:
        raise ValueError(
            f"none of the {len(partition_keys)} customer(s) has CRM events up to {until or 'now'}: "
            "materialize crm_events first"
        )
    hyper = {"n_features": len(DEEP_COLUMNS), "lookback": settings.lookback}
    budget = measure_budget(settings.model, hyper, device, gpu_memory_budget_gb, mixed_precision)
    trained = train_deep(customers, settings, device, mixed_precision, budget, progress)
    used = [c for c in customers if c.partition_key in trained.groups]
    windows = sum(len(c) - trained.model.span + 1 for c in used)
    window = (_day(min(c.dates[0] for c in used)), _day(max(c.dates[-1] for c in used)))
    with warehouse.connect() as con:
        version, path = save_model(con, trained, models_dir(warehouse.path), run_id, window, windows)
    return TrainingRun(version, path, trained, windows, sum(len(c) for c in used))


def _day(value: np.datetime64) -> date:
    return pd.Timestamp(value).date()


@dataclass(frozen=True)
class VersionScores:
    """The events one model version scored, and the customers it could not score (why)."""

    version: str
    trained: TrainedModel
    scores: list[EventScores]
    unscored: dict[str, str]


def score_and_write(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    model: str,
    device: torch.device,
    run_id: str,
    version: str | None = None,
    gpu_memory_budget_gb: float = 8.0,
) -> tuple[list[str], int, dict[str, str]]:
    """Score the customers' events with a registered ``version``, or by default each customer
    with the newest version trained on it (a customer no version holds goes to the newest
    one, which says why it cannot score it), and replace their rows of this detector.
    Returns (versions used, rows written, unscored reasons)."""
    if version:
        assigned = dict.fromkeys(partition_keys, version)
    else:
        newest, _ = registered_version(con, model)
        assigned = dict.fromkeys(partition_keys, newest) | newest_versions(con, model, partition_keys)
    customers = load_events(con, partition_keys)
    parts = []
    for used in sorted(set(assigned.values())):
        found, trained = load_model(con, model, used)
        check_columns(trained, DEEP_COLUMNS, found)
        mine = [c for c in customers if assigned[c.partition_key] == used]
        hyper = trained.model.hyperparameters()
        budget = measure_budget(trained.settings.model, hyper, device, gpu_memory_budget_gb, False)
        scores, unscored = score_events(trained, mine, device, budget)
        parts.append(VersionScores(found, trained, scores, unscored))
    missing = set(partition_keys) - {c.partition_key for c in customers}
    parts[-1].unscored.update(dict.fromkeys(sorted(missing), "no CRM events"))
    written = write_event_scores(con, model, parts, run_id)
    return [p.version for p in parts], written, {k: r for p in parts for k, r in p.unscored.items()}


def write_event_scores(
    con: duckdb.DuckDBPyConnection, detector: str, parts: Sequence[VersionScores], run_id: str
) -> int:
    """Replace the run customers' rows of this deep detector in one transaction, each row with
    the version (and its first threshold) that scored it."""
    scores = [(p, s) for p in parts for s in p.scores]
    sizes = [len(s.score) for _, s in scores]
    frame = pd.DataFrame(
        {
            "partition_key": np.repeat([s.partition_key for _, s in scores], sizes),
            "day": np.concatenate([s.dates for _, s in scores] or [np.empty(0, "datetime64[D]")]),
            "record_id": np.concatenate([s.record_ids for _, s in scores] or [np.empty(0, object)]),
            "score": np.concatenate([s.score for _, s in scores] or [np.empty(0)]),
            "confidence": np.concatenate([s.confidence for _, s in scores] or [np.empty(0)]),
            "severity": np.concatenate([s.severity for _, s in scores] or [np.empty(0, int)]),
            "threshold": np.repeat([p.trained.settings.thresholds[0] for p, _ in scores], sizes),
            "model_version": np.repeat([p.version for p, _ in scores], sizes),
        }
    )
    summary = pd.DataFrame(
        [_summary(s, detector, p.version, p.trained.settings.thresholds[0]) for p, s in scores]
        + [
            (key, MEASURE, detector, 0, 0, None, None, None, None, None, None, 0.0, reason, p.version)
            for p in parts
            for key, reason in p.unscored.items()
        ],
        columns=SUMMARY_COLUMNS,
    )
    now = datetime.now()
    con.execute(TABLES_SQL)
    keys = sorted({s.partition_key for _, s in scores} | {k for p in parts for k in p.unscored})
    scope = "partition_key IN (SELECT unnest(?::VARCHAR[])) AND detector = ? AND measure = ?"
    with staged_transaction(con, new_event_scores=frame, new_event_summary=summary):
        for table in ("anomaly_scores", "customer_anomalies"):
            con.execute(f"DELETE FROM {table} WHERE {scope}", [keys, detector, MEASURE])
        written = con.execute(
            f"INSERT INTO anomaly_scores ({SCORE_COLUMNS}, record_id, confidence, severity) "
            "SELECT partition_key, ?, day::DATE, ?, score, threshold, severity >= 1, model_version, ?, ?, "
            "record_id, confidence, severity FROM new_event_scores",
            [MEASURE, detector, run_id, now],
        ).fetchall()[0][0]
        con.execute("INSERT INTO customer_anomalies SELECT *, ?, ? FROM new_event_summary", [run_id, now])
    return int(written)


def _summary(s: EventScores, detector: str, version: str, threshold: float) -> tuple:
    flags = s.severity >= 1
    top = int(np.argmax(s.score)) if len(s.score) else None
    return (
        s.partition_key, MEASURE, detector, len(s.score), int(flags.sum()),
        float(flags.mean()) if len(flags) else None,
        s.dates[top] if top is not None else None, float(s.score[top]) if top is not None else None,
        None, None, None, 0.0, None, version,
    )  # fmt: skip
