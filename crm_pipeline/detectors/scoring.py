"""Per-customer scoring: every chosen detector on every customer's series, fanned out over
processes, written idempotently into ``anomaly_scores`` and ``customer_anomalies``.

Plain functions, no Dagster: the scoring asset and the benchmark call ``score_customers``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from crm_pipeline.detectors.base import Detector, DetectorError, SeriesFrame
from crm_pipeline.detectors.registry import build_detector
from crm_pipeline.features.lag_sql import MEASURES, NUMERIC_FEATURES, WEEKDAYS
from crm_pipeline.warehouse.customer_tables import (
    BATCH_CUSTOMERS,
    Progress,
    in_batches,
    run_customers_label,
    staged_transaction,
)
from crm_pipeline.workers import worker_deaths

SQL_DIR = Path(__file__).parent / "sql"
INPUT_SQL = (SQL_DIR / "detector_input.sql").read_text()
UNSCORED_SQL = (SQL_DIR / "unscored_reasons.sql").read_text()
TABLES_SQL = (SQL_DIR / "anomaly_tables.sql").read_text()
FEATURES = (*NUMERIC_FEATURES[1:], *(f"is_{d}" for d in WEEKDAYS))


@dataclass(frozen=True)
class DetectorSpec:
    """A detector by registry name with its constructor parameters."""

    name: str
    params: Mapping[str, object] = field(default_factory=dict)

    def build(self) -> Detector:
        return build_detector(self.name, self.params)


def build_detectors(specs: Sequence[DetectorSpec]) -> list[Detector]:
    """All detectors of a run, built (and so validated) before any work; labels must differ."""
    if not specs:
        raise ValueError("no detector chosen: name at least one")
    detectors = [spec.build() for spec in specs]
    labels = [d.label for d in detectors]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"detectors chosen twice with the same label: {', '.join(repeated)}")
    return detectors


@dataclass(frozen=True)
class SeriesResult:
    """One detector on one series: per-day results, or the error that stopped it."""

    partition_key: str
    measure: str
    detector: str
    version: str
    days: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    quality: Mapping[str, float]
    seconds: float
    error: str | None = None


def run_detectors(
    partition_key: str, measure: str, data: SeriesFrame, detectors: Sequence[Detector]
) -> list[SeriesResult]:
    """Fit and score each detector on one series; a failing detector is recorded, not raised."""
    results = []
    for detector in detectors:
        started = time.perf_counter()
        days, score, threshold, quality, error = data.days[:0], np.empty(0), np.empty(0), {}, None
        try:
            detection = detector.fit(data).detect(data)
            days, score, threshold = data.days, detection.score, detection.threshold
            quality = getattr(detector, "quality_", {})
        except (DetectorError, ValueError, np.linalg.LinAlgError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        results.append(
            SeriesResult(
                partition_key,
                measure,
                detector.label,
                detector.version,
                days,
                score,
                threshold,
                quality,
                seconds,
                error,
            )
        )
    return results


def missing_series(
    con: duckdb.DuckDBPyConnection,
    frames: Sequence[tuple[str, str, SeriesFrame]],
    measures: Sequence[str],
    detectors: Sequence[Detector],
) -> list[SeriesResult]:
    """An error result per detector for each run customer and measure without input, with the
    reason (too little history, or no lag features yet)."""
    present = {(key, measure) for key, measure, _ in frames}
    empty = np.empty(0)
    return [
        SeriesResult(key, m, d.label, d.version, empty.astype("datetime64[D]"), empty, empty, {}, 0.0, reason)
        for key, reason in con.execute(UNSCORED_SQL).fetchall()
        for m in measures
        if (key, m) not in present
        for d in detectors
    ]


def check_measures(measures: Sequence[str]) -> None:
    """Refuse measures the lag dataset does not have, naming them."""
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown or not measures:
        raise ValueError(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")


def load_frames(
    con: duckdb.DuckDBPyConnection, measures: Sequence[str], history_days: int, short_histories: bool = False
) -> list[tuple[str, str, SeriesFrame]]:
    """The detector input of every customer in ``run_customers`` and each of ``measures``
    (customers marked as too short in ``customer_history`` only if ``short_histories``)."""
    check_measures(measures)
    table = con.execute(INPUT_SQL, [list(measures), short_histories, history_days]).df()
    frames = []
    for (key, measure), rows in table.groupby(["partition_key", "measure"], sort=True):
        frames.append(
            (
                key,
                measure,
                SeriesFrame(
                    rows["day"].to_numpy(dtype="datetime64[D]"),
                    rows["y"].to_numpy(dtype=float),
                    rows[list(FEATURES)].to_numpy(dtype=float),
                    FEATURES,
                ),
            )
        )
    return frames


def score_customers(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    specs: Sequence[DetectorSpec],
    run_id: str,
    measures: Sequence[str] = ("amount_out", "counterparts_out"),
    history_days: int = 730,
    short_histories: bool = False,
    n_jobs: int = -1,
    batch_size: int = BATCH_CUSTOMERS,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Score ``partition_keys`` with every detector of ``specs``; returns rows written and
    series that failed. A customer with too little history (``customer_history``; scored
    anyway with ``short_histories``), or a detector that fails on a series, is recorded in
    ``customer_anomalies.error`` and the run goes on. ``n_jobs`` processes share
    the series of each batch (``-1``: one per core)."""
    detectors = build_detectors(specs)
    check_measures(measures)
    totals = {"anomaly_scores": 0, "failed_series": 0, "customers": 0}
    with Parallel(n_jobs=n_jobs, backend="loky") as parallel:

        def write_batch() -> int:
            frames = load_frames(con, measures, history_days, short_histories)
            kept = (
                f"{totals['customers']} customers of earlier batches have their new scores, this batch "
                "and the later ones keep their previous scores"
            )
            jobs = (delayed(run_detectors)(key, m, frame, detectors) for key, m, frame in frames)
            with worker_deaths(f"scoring {run_customers_label(con)}", kept):
                results = parallel(jobs)
            flat = [r for per_series in results for r in per_series]
            flat += missing_series(con, frames, measures, detectors)
            totals["failed_series"] += sum(r.error is not None for r in flat)
            written = write_results(con, flat, [d.label for d in detectors], measures, run_id)
            totals["anomaly_scores"] += written
            totals["customers"] += con.execute("SELECT count(*) FROM run_customers").fetchone()[0]
            return written

        in_batches(con, partition_keys, write_batch, batch_size, progress)
    return {k: totals[k] for k in ("anomaly_scores", "failed_series")}


def write_results(
    con: duckdb.DuckDBPyConnection,
    results: Sequence[SeriesResult],
    labels: Sequence[str],
    measures: Sequence[str],
    run_id: str,
) -> int:
    """Replace the run customers' rows of these detectors and measures, in one transaction."""
    con.execute(TABLES_SQL)
    now = datetime.now()
    scores = pd.DataFrame(
        {
            "partition_key": np.repeat([r.partition_key for r in results], [len(r.days) for r in results]),
            "measure": np.repeat([r.measure for r in results], [len(r.days) for r in results]),
            "day": np.concatenate([r.days for r in results] or [np.empty(0, "datetime64[D]")]),
            "detector": np.repeat([r.detector for r in results], [len(r.days) for r in results]),
            "score": np.concatenate([r.score for r in results] or [np.empty(0)]),
            "threshold": np.concatenate([r.threshold for r in results] or [np.empty(0)]),
            "model_version": np.repeat([r.version for r in results], [len(r.days) for r in results]),
        }
    )
    summary = pd.DataFrame([_summary(r) for r in results], columns=SUMMARY_COLUMNS)
    scope = (
        "partition_key IN (SELECT partition_key FROM run_customers) "
        "AND list_contains(?::VARCHAR[], detector) AND list_contains(?::VARCHAR[], measure)"
    )
    with staged_transaction(con, new_scores=scores, new_summary=summary):
        for table in ("anomaly_scores", "customer_anomalies"):
            con.execute(f"DELETE FROM {table} WHERE {scope}", [list(labels), list(measures)])
        written = con.execute(
            f"INSERT INTO anomaly_scores ({SCORE_COLUMNS}) SELECT partition_key, measure, day::DATE, "
            "detector, score, threshold, score > threshold, model_version, ?, ? FROM new_scores",
            [run_id, now],
        ).fetchall()[0][0]
        con.execute("INSERT INTO customer_anomalies SELECT *, ?, ? FROM new_summary", [run_id, now])
    return int(written)


#: The columns every detector writes (deep detectors add record_id, confidence and severity).
SCORE_COLUMNS = (
    "partition_key, measure, day, detector, score, threshold, flag, model_version, run_id, scored_at"
)
SUMMARY_COLUMNS = [
    "partition_key", "measure", "detector", "days_scored", "anomalies", "anomaly_share", "top_day",
    "top_score", "silhouette", "davies_bouldin", "calinski_harabasz", "seconds", "error", "model_version",
]  # fmt: skip


def _summary(r: SeriesResult) -> tuple:
    flags = r.score > r.threshold
    top = int(np.argmax(r.score)) if len(r.score) else None
    return (
        r.partition_key,
        r.measure,
        r.detector,
        len(r.days),
        int(flags.sum()),
        float(flags.mean()) if len(flags) else None,
        r.days[top] if top is not None else None,
        float(r.score[top]) if top is not None else None,
        r.quality.get("silhouette"),
        r.quality.get("davies_bouldin"),
        r.quality.get("calinski_harabasz"),
        r.seconds,
        r.error,
        r.version,
    )
