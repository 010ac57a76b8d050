"""Explain the flagged events of a set of customers with the model version that flagged them,
and store the SHAP values in DuckDB (plain functions, no Dagster)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from crm_pipeline.detectors.deep.artifacts import check_columns, load_model
from crm_pipeline.detectors.deep.data import DEEP_COLUMNS, load_events
from crm_pipeline.detectors.deep.models import DeepAnt
from crm_pipeline.explain.deep import Explanation, explain_events
from crm_pipeline.warehouse.customer_tables import register_run_customers, staged_transaction

SQL_DIR = Path(__file__).parent / "sql"
TABLE_SQL = (SQL_DIR / "shap_values.sql").read_text()
FLAGGED_SQL = (SQL_DIR / "flagged_events.sql").read_text()


@dataclass(frozen=True)
class ExplanationRun:
    """What one detector's explanation run did."""

    detector: str
    version: str | None
    events: int
    rows: int
    seconds: float


def newest_scored_version(con: duckdb.DuckDBPyConnection, detector: str) -> str | None:
    """The model version whose scores of the run's customers are in ``anomaly_scores``."""
    rows = con.execute(
        "SELECT max(model_version) FROM anomaly_scores JOIN run_customers USING (partition_key) "
        "WHERE detector = ? AND measure = 'crm_events'",
        [detector],
    ).fetchall()
    return rows[0][0]


def explain_customers(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    detector: str,
    device: torch.device,
    run_id: str,
    min_severity: int = 2,
    per_customer: int = 10,
    background: int = 50,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ExplanationRun:
    """Explain each customer's top flagged events of ``detector`` (the version that scored
    them) and replace the customers' SHAP rows of that detector."""
    started = time.perf_counter()
    con.execute(TABLE_SQL)
    register_run_customers(con, partition_keys)
    version = newest_scored_version(con, detector)
    if version is None:
        _replace(con, detector, [], run_id)
        return ExplanationRun(detector, None, 0, 0, time.perf_counter() - started)
    flagged = con.execute(
        FLAGGED_SQL,
        {
            "detector": detector,
            "version": version,
            "min_severity": min_severity,
            "per_customer": per_customer,
        },
    ).fetchall()
    wanted: dict[str, list[str]] = {}
    for key, record in flagged:
        wanted.setdefault(key, []).append(record)
    _, trained = load_model(con, detector, version)
    check_columns(trained, DEEP_COLUMNS, version)
    customers = load_events(con, sorted(wanted))
    register_run_customers(con, partition_keys)  # load_events narrowed it
    explanations = []
    for done, events in enumerate(customers, start=1):
        position = {r: i for i, r in enumerate(events.record_ids)}
        # an event needs a whole window ending at it (the autoencoder also scores the first few)
        first = trained.model.span - 1
        positions = np.array(
            sorted(p for r in wanted[events.partition_key] if (p := position.get(r, -1)) >= first)
        )
        if len(positions):
            explanations.append(explain_events(trained, events, positions, device, background, seed))
        if progress:
            progress(done, len(customers))
    explainer = "deep" if isinstance(trained.model, DeepAnt) else "gradient"
    rows = _replace(con, detector, explanations, run_id, version, explainer)
    events_explained = sum(len(e.record_ids) for e in explanations)
    return ExplanationRun(detector, version, events_explained, rows, time.perf_counter() - started)


def _replace(
    con: duckdb.DuckDBPyConnection,
    detector: str,
    explanations: Sequence[Explanation],
    run_id: str,
    version: str | None = None,
    explainer: str = "",
) -> int:
    """Replace the run customers' SHAP rows of ``detector`` in one transaction."""
    frames = []
    for e in explanations:
        n, steps, columns = e.values.shape
        frames.append(
            pd.DataFrame(
                {
                    "partition_key": e.partition_key,
                    "record_id": np.repeat(e.record_ids, steps * columns),
                    "day": np.repeat(e.dates, steps * columns),
                    "column_name": np.tile(np.array(DEEP_COLUMNS), n * steps),
                    "step": np.tile(np.repeat(np.arange(steps), columns), n),
                    "shap_value": e.values.ravel(),
                    "explained_error": np.repeat(e.outputs, steps * columns),
                    "expected_error": e.expected,
                }
            )
        )
    frame = pd.concat(frames) if frames else pd.DataFrame(
        columns=["partition_key", "record_id", "day", "column_name", "step", "shap_value",
                 "explained_error", "expected_error"]
    )  # fmt: skip
    with staged_transaction(con, new_shap=frame):
        con.execute(
            "DELETE FROM shap_values WHERE detector = ? "
            "AND partition_key IN (SELECT partition_key FROM run_customers)",
            [detector],
        )
        written = con.execute(
            "INSERT INTO shap_values SELECT partition_key, record_id, day::DATE, ?, ?, column_name, step, "
            "shap_value, explained_error, expected_error, ?, ?, ? FROM new_shap",
            [detector, version or "", explainer, run_id, datetime.now()],
        ).fetchall()[0][0]
    return int(written)
