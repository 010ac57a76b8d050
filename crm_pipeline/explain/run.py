"""Explain the flagged events of a set of customers with the model version that flagged them,
and store the SHAP values in DuckDB (plain functions, no Dagster): the deep detectors' CRM
events (``explain_customers``) and the classical tree detectors' days (``explain_tree_customers``).
"""

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
from joblib import Parallel, delayed

from crm_pipeline.detectors.base import SeriesFrame
from crm_pipeline.detectors.deep.artifacts import check_columns, load_model
from crm_pipeline.detectors.deep.data import DEEP_COLUMNS, load_events
from crm_pipeline.detectors.deep.models import DeepAnt
from crm_pipeline.detectors.scoring import DetectorSpec, load_frames
from crm_pipeline.explain.deep import Explanation, explain_events
from crm_pipeline.explain.trees import EXPLAINED_OUTPUT, check_explainable, explain_days
from crm_pipeline.warehouse.customer_tables import register_run_customers, staged_transaction
from crm_pipeline.workers import worker_deaths

SQL_DIR = Path(__file__).parent / "sql"
TABLE_SQL = (SQL_DIR / "shap_values.sql").read_text()
FLAGGED_SQL = (SQL_DIR / "flagged_events.sql").read_text()
FLAGGED_DAYS_SQL = (SQL_DIR / "flagged_days.sql").read_text()
#: Columns of warehouses made before the tree explanations, when only errors were explained.
RENAMED = {"explained_error": "explained_output", "expected_error": "expected_output"}
#: ``per_customer`` when every flagged event is explained.
EVERY_EVENT = 2**31 - 1
#: Series explained between two progress lines in the run log.
PROGRESS_EVERY = 25
ROW_COLUMNS = (
    "partition_key", "record_id", "day", "column_name", "step", "shap_value", "explained_output",
    "expected_output", "model_version",
)  # fmt: skip


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``shap_values``, or bring an older one's columns up to date."""
    con.execute(TABLE_SQL)
    have = {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'shap_values'"
        ).fetchall()
    }
    for old, new in RENAMED.items():
        if old in have:
            con.execute(f"ALTER TABLE shap_values RENAME COLUMN {old} TO {new}")


@dataclass(frozen=True)
class ExplanationRun:
    """What one detector's explanation run did."""

    detector: str
    versions: tuple[str, ...]
    events: int
    rows: int
    seconds: float


def scored_versions(con: duckdb.DuckDBPyConnection, detector: str) -> list[str]:
    """The model versions whose scores of the run's customers are in ``anomaly_scores`` (one
    per customer; several when a backfill trained some customers apart)."""
    rows = con.execute(
        "SELECT DISTINCT model_version FROM anomaly_scores JOIN run_customers USING (partition_key) "
        "WHERE detector = ? AND measure = 'crm_events' ORDER BY 1",
        [detector],
    ).fetchall()
    return [v for (v,) in rows]


def explain_customers(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    detector: str,
    device: torch.device,
    run_id: str,
    min_severity: int = 1,
    per_customer: int | None = None,
    background: int = 50,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ExplanationRun:
    """Explain each customer's flagged events of ``detector`` (those with at least
    ``min_severity`` thresholds reached; the ``per_customer`` highest-scored when given) with the
    version that scored them, and replace the customers' SHAP rows of that detector."""
    started = time.perf_counter()
    ensure_table(con)
    register_run_customers(con, partition_keys)
    versions = scored_versions(con, detector)
    frames, events_explained, explainer = [], 0, ""
    for version in versions:
        explanations, explainer = _explain_version(
            con,
            partition_keys,
            detector,
            version,
            device,
            min_severity,
            per_customer,
            background,
            seed,
            progress,
        )
        frames.append(_rows(explanations).assign(model_version=version))
        events_explained += sum(len(e.record_ids) for e in explanations)
    frame = pd.concat(frames) if frames else _rows([])
    rows = _replace(con, detector, frame, run_id, explainer)
    return ExplanationRun(detector, tuple(versions), events_explained, rows, time.perf_counter() - started)


def _explain_version(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    detector: str,
    version: str,
    device: torch.device,
    min_severity: int,
    per_customer: int | None,
    background: int,
    seed: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[Explanation], str]:
    """The explanations of the events ``version`` flagged among the run's customers, and the
    explainer's name."""
    flagged = con.execute(
        FLAGGED_SQL,
        {
            "detector": detector,
            "version": version,
            "min_severity": min_severity,
            "per_customer": per_customer or EVERY_EVENT,
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
        positions = np.array(
            sorted(p for r in wanted[events.partition_key] if (p := position.get(r, -1)) >= 0)
        )
        if len(positions):
            explanations.append(explain_events(trained, events, positions, device, background, seed))
        if progress:
            progress(done, len(customers))
    return explanations, "deep" if isinstance(trained.model, DeepAnt) else "gradient"


def explain_tree_customers(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    spec: DetectorSpec,
    run_id: str,
    per_customer: int = 10,
    history_days: int | None = None,
    n_jobs: int = -1,
    progress: Callable[[int, int], None] | None = None,
) -> ExplanationRun:
    """Explain each customer's top flagged days of the tree detector ``spec`` (with the
    parameters that scored them: its version must match) on the series it scored (the newest
    ``history_days``; None: as many as were scored), refitted the same way, and replace the
    customers' SHAP rows of that detector. ``n_jobs`` processes share the series (``-1``: one
    per core): refitting dominates (an isolation forest and its 100 trees' conversion, ~1 s)."""
    started = time.perf_counter()
    check_explainable(spec.name)
    detector = spec.build()
    label, version = detector.label, detector.version
    ensure_table(con)
    register_run_customers(con, partition_keys)
    flagged = con.execute(
        FLAGGED_DAYS_SQL, {"detector": label, "version": version, "per_customer": per_customer}
    ).df()
    if flagged.empty:
        _check_version(con, label, version)
    tasks = []
    if not flagged.empty:
        history = history_days or int(flagged["days_scored"].max())
        register_run_customers(con, sorted(set(flagged["partition_key"])))
        frames = load_frames(con, sorted(set(flagged["measure"])), history, short_histories=True)
        register_run_customers(con, partition_keys)
        wanted = flagged.groupby(["partition_key", "measure"])
        for key, measure, data in frames:
            if (key, measure) not in wanted.groups:
                continue
            mine = wanted.get_group((key, measure))
            scored = int(mine["days_scored"].iloc[0])
            days = mine["day"].to_numpy(dtype="datetime64[D]")
            if len(data) != scored or not np.isin(days, data.days).all():
                raise ValueError(
                    f"{label} on {key} {measure}: scored on {scored} days, but the lag features give "
                    f"{len(data)} of the newest {history}: score it again, then explain"
                )
            tasks.append((key, measure, data, np.searchsorted(data.days, days)))
    parts = []
    with (
        worker_deaths(f"explaining {label} on {len(tasks)} series", "shap_values keeps its previous rows"),
        Parallel(n_jobs=n_jobs, backend="loky", return_as="generator") as parallel,
    ):
        results = parallel(delayed(_tree_rows)(spec, *task) for task in tasks)
        for done, part in enumerate(results, start=1):
            parts.append(part)
            if progress and (done % PROGRESS_EVERY == 0 or done == len(tasks)):
                progress(done, len(tasks))
    frame = (pd.concat(parts) if parts else _rows([])).assign(model_version=version)
    rows = _replace(con, label, frame, run_id, f"tree:{EXPLAINED_OUTPUT[spec.name]}")
    return ExplanationRun(label, (version,), len(flagged), rows, time.perf_counter() - started)


def _tree_rows(
    spec: DetectorSpec, key: str, measure: str, data: SeriesFrame, positions: np.ndarray
) -> pd.DataFrame:
    """``shap_values`` rows of one series' days: one per day and lag feature (step 0)."""
    e = explain_days(spec.build().fit(data), data, positions)
    n, columns = e.values.shape
    return pd.DataFrame(
        {
            "partition_key": key,
            "record_id": np.repeat([f"{measure} {d}" for d in e.days], columns),
            "day": np.repeat(e.days, columns),
            "column_name": np.tile(np.array(e.features), n),
            "step": 0,
            "shap_value": e.values.ravel(),
            "explained_output": np.repeat(e.outputs, columns),
            "expected_output": np.repeat(e.expected, columns),
        }
    )


def _check_version(con: duckdb.DuckDBPyConnection, label: str, version: str) -> None:
    """Nothing flagged by this version: refuse if the customers were scored by another one."""
    other = con.execute(
        "SELECT any_value(model_version) FROM anomaly_scores JOIN run_customers USING (partition_key) "
        "WHERE detector = ? AND model_version <> ?",
        [label, version],
    ).fetchall()[0][0]
    if other is not None:
        raise ValueError(
            f"{label}: these customers were scored by version {other}, these parameters make "
            f"version {version}: explain with the parameters that scored them"
        )


def _rows(explanations: Sequence[Explanation]) -> pd.DataFrame:
    """``shap_values`` rows of deep explanations: one per event, look-back step and column."""
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
                    "step": np.repeat(e.steps.ravel(), columns),
                    "shap_value": e.values.ravel(),
                    "explained_output": np.repeat(e.outputs, steps * columns),
                    "expected_output": e.expected,
                }
            )
        )
    return pd.concat(frames) if frames else pd.DataFrame(columns=list(ROW_COLUMNS))


def _replace(
    con: duckdb.DuckDBPyConnection,
    detector: str,
    frame: pd.DataFrame,
    run_id: str,
    explainer: str = "",
) -> int:
    """Replace the run customers' SHAP rows of ``detector`` with ``frame`` (its rows carry the
    model version that scored them) in one transaction."""
    with staged_transaction(con, new_shap=frame):
        con.execute(
            "DELETE FROM shap_values WHERE detector = ? "
            "AND partition_key IN (SELECT partition_key FROM run_customers)",
            [detector],
        )
        written = con.execute(
            "INSERT INTO shap_values SELECT partition_key, record_id, day::DATE, ?, model_version, "
            "column_name, step, shap_value, explained_output, expected_output, ?, ?, ? FROM new_shap",
            [detector, explainer, run_id, datetime.now()],
        ).fetchall()[0][0]
    return int(written)
