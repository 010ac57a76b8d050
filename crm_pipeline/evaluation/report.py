"""The evaluation's detector set, its tables in the shape of the paper's Tables 2 and 3, and
where they are stored."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from crm_pipeline.detectors.scoring import DetectorSpec
from crm_pipeline.detectors.thresholds import CRITERIA
from crm_pipeline.evaluation.protocol import Protocol

RESULTS_SQL = (Path(__file__).parent / "sql" / "evaluation_results.sql").read_text()
REGRESSORS = [("svr", {"kernel": k}) for k in ("linear", "poly", "rbf")] + [
    (name, {}) for name in ("sgd", "decision_tree", "adaboost", "random_forest")
]
#: The paper's comparison: every regressor with every threshold criterion, ARIMA, and the four
#: unsupervised detectors.
EVALUATION_SPECS = [
    *(DetectorSpec(name, params | {"criterion": c}) for name, params in REGRESSORS for c in CRITERIA),
    DetectorSpec("arima"),
    *(DetectorSpec(name) for name in ("kmeans", "dbscan", "agglomerative", "isolation_forest")),
]
#: The best figures Soro et al. report, printed beside ours.
PAPER_BEST = "paper's best: k-means P 0.77 / R 0.80; ARIMA R 1.00 with P 0.06"
#: Said under the tables when the source's own anomalous days were left out of the counts.
PLANTED_NOTE = (
    "The source's planted anomaly days are left out of fp and tn: a flag there is a true anomaly. "
    "precision_strict counts those flags false, as the paper counts every flag but the injected one."
)
#: Said instead of the label counts of ``anomaly_scores`` while the warehouse has none.
NO_SCORES_NOTE = "no anomaly_scores yet: materialize anomaly_scores to count its flags against the labels"


def write_results(
    con: duckdb.DuckDBPyConnection, summary: pd.DataFrame, run_id: str, protocol: Protocol
) -> int:
    """Append this run's rows to ``evaluation_results`` (earlier runs stay for comparison)."""
    con.execute(RESULTS_SQL)
    rows = summary.assign(run_id=run_id, evaluated_at=datetime.now(), protocol=json.dumps(asdict(protocol)))
    con.register("evaluation_rows", rows)
    try:
        return con.execute(
            "INSERT INTO evaluation_results BY NAME SELECT run_id, evaluated_at, family, detector, measure, "
            "series, failed, tp, fp, tn, fn, fp_planted, tn_planted, accuracy, precision, precision_strict, "
            "recall, f1, protocol FROM evaluation_rows"
        ).fetchall()[0][0]
    finally:
        con.unregister("evaluation_rows")


def paper_table(summary: pd.DataFrame, family: str) -> str:
    """Markdown: one row per detector, accuracy / precision / recall per measure (Table 2 for
    the forecasting family, Table 3 for the unsupervised one); the strict precision too when
    planted days were left out."""
    part = summary[summary["family"] == family]
    if part.empty:
        return "_no detector of this family was evaluated_"
    rates = ["accuracy", "precision", "recall"] + (["precision_strict"] if planted_left_out(summary) else [])
    wide = part.pivot(index="detector", columns="measure", values=rates)
    wide.columns = [f"{measure} {metric}" for metric, measure in wide.columns]
    wide = wide[sorted(wide.columns)].round(3)
    return wide.reset_index().to_markdown(index=False)


def best_detector(summary: pd.DataFrame) -> pd.Series:
    """The detector and measure with the best F1 (ties: higher precision)."""
    ranked = summary.dropna(subset=["f1"]).sort_values(["f1", "precision"], ascending=False)
    if ranked.empty:
        raise ValueError("no detector produced a result: nothing to rank")
    return ranked.iloc[0]


def planted_left_out(summary: pd.DataFrame) -> bool:
    """Whether the protocol knew anomalous days of the source and left them out of its counts."""
    return bool(summary["fp_planted"].sum() + summary["tn_planted"].sum())


def result_line(best: pd.Series) -> str:
    """The benchmark-style last line a script can collect (precision_strict: every flag but the
    injected one counted false, as the paper counts)."""
    return (
        f"RESULT best_detector={best['detector']} measure={best['measure']} "
        f"precision={best['precision']:.3f} recall={best['recall']:.3f} f1={best['f1']:.3f} "
        f"precision_strict={best['precision_strict']:.3f}"
    )
