"""The demo's planted anomalies as ground truth for ``anomaly_scores``.

The labels stay in the tenant databases (the pipeline never extracts them): they are read
with the same each-database runner as any entity, and each detector's flags are counted
against them: precision = labelled flagged days / flagged days, recall = labelled flagged
days / labelled scored days. The injection protocol leaves the same days out of its false
positives (``evaluation/protocol.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from crm_pipeline.sources.runner import EachDbRunner, run_each_source, select_databases

SQL_DIR = Path(__file__).parent / "sql"
LABELS_SQL = (SQL_DIR / "planted_labels.sql").read_text()
PLANTED_DAYS_SQL = (SQL_DIR / "planted_days.sql").read_text()
LABEL_SCORES_SQL = (SQL_DIR / "label_scores.sql").read_text()


class _Collect:
    """A runner sink that keeps every batch in memory, tagged with its database."""

    def __init__(self) -> None:
        self.frames: dict[str, list[pd.DataFrame]] = {}

    def write(self, database: str, batch: pa.RecordBatch) -> None:
        self.frames.setdefault(database, []).append(batch.to_pandas().assign(source_db=database))

    def discard(self, database: str) -> None:
        self.frames.pop(database, None)


def read_planted_labels(runners: Sequence[EachDbRunner]) -> pd.DataFrame:
    """(source_db, customer_id, event_date, kind, scope) of every planted anomaly in every
    database of every source (scope: ``transactions`` or ``crm_events``).

    A database without an ``anomaly_labels`` table (anything but the demo) fails like any
    extraction, naming the database."""
    sink = _Collect()
    run_each_source([(runner, LABELS_SQL, ()) for runner in runners], sink, select_databases(runners))
    frames = [f for parts in sink.frames.values() for f in parts]
    if not frames:
        return pd.DataFrame(columns=["customer_id", "event_date", "kind", "scope", "source_db"])
    return pd.concat(frames, ignore_index=True)


def planted_days(con: duckdb.DuckDBPyConnection, labels: pd.DataFrame) -> pd.DataFrame:
    """(partition_key, scope, day) of every planted label whose customer the warehouse holds."""
    con.register("planted_label_rows", labels)
    try:
        return con.execute(PLANTED_DAYS_SQL).df()
    finally:
        con.unregister("planted_label_rows")


def days_by_customer(days: pd.DataFrame) -> dict[str, np.ndarray]:
    """``planted_days`` as the protocol takes them: per customer key, its transaction days (the
    protocol injects into transaction measures)."""
    transactions = days[days["scope"] == "transactions"].groupby("partition_key")
    return {key: rows["day"].to_numpy(dtype="datetime64[D]") for key, rows in transactions}


def score_against_labels(con: duckdb.DuckDBPyConnection, days: pd.DataFrame) -> pd.DataFrame:
    """Per detector: tp, fp, fn, tn over the scored customer-days against the ``planted_days`` of
    its scope, precision, recall and F1."""
    con.register("planted_days", days)
    try:
        table = con.execute(LABEL_SCORES_SQL).df()
    finally:
        con.unregister("planted_days")
    with np.errstate(divide="ignore", invalid="ignore"):
        table["precision"] = table["tp"] / (table["tp"] + table["fp"])
        table["recall"] = table["tp"] / (table["tp"] + table["fn"])
        table["f1"] = 2 * table["precision"] * table["recall"] / (table["precision"] + table["recall"])
    return table
