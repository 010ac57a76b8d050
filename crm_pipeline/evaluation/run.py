"""One evaluation run, shared by the ``detector_evaluation`` asset and ``crm-pipeline evaluate``:
sample the customers, run the protocol, store the tables, and optionally count the scores
against the planted labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd

from crm_pipeline.detectors.scoring import DetectorSpec
from crm_pipeline.evaluation.labels import (
    days_by_customer,
    planted_days,
    read_planted_labels,
    score_against_labels,
)
from crm_pipeline.evaluation.protocol import Protocol, evaluate_customers, evaluation_customers, summarise
from crm_pipeline.evaluation.report import write_results
from crm_pipeline.sources.runner import EachDbRunner
from crm_pipeline.warehouse.customer_tables import Progress
from crm_pipeline.warehouse.store import table_names


@dataclass(frozen=True)
class EvaluationRun:
    """What one run produced: the sampled customers, the per-detector summary, the rows
    stored in ``evaluation_results``, and when labels were asked for, how many were read and
    ``anomaly_scores`` counted against them (None while the warehouse has no scores)."""

    customers: list[str]
    summary: pd.DataFrame
    written: int
    planted: pd.DataFrame | None = None
    labels: int = 0


def run_evaluation(
    con: duckdb.DuckDBPyConnection,
    specs: Sequence[DetectorSpec],
    protocol: Protocol,
    run_id: str,
    customers: int | None,
    measures: Sequence[str],
    n_jobs: int = -1,
    progress: Progress | None = None,
    labels_from: Sequence[EachDbRunner] | None = None,
) -> EvaluationRun:
    """The protocol on up to ``customers`` customers (seeded by the protocol seed). Labels are
    read from the databases of the ``labels_from`` sources first, so a source without them fails
    before the long part; their days are then no false positives of the protocol, and
    ``anomaly_scores`` is counted against them. A warehouse without features or without a
    customer with enough history raises ``ValueError`` saying so."""
    labels = read_planted_labels(labels_from) if labels_from is not None else None
    keys = evaluation_customers(con, customers, protocol.seed)
    if not keys:
        raise ValueError(
            "no customer with enough history (customer_history): materialize customer_series first"
        )
    days = planted_days(con, labels) if labels is not None else None
    counts = evaluate_customers(
        con,
        keys,
        specs,
        measures=measures,
        protocol=protocol,
        n_jobs=n_jobs,
        progress=progress,
        planted_days=days_by_customer(days) if days is not None else None,
    )
    summary = summarise(counts)
    written = write_results(con, summary, run_id, protocol)
    if days is None:
        return EvaluationRun(keys, summary, written)
    scored = score_against_labels(con, days) if "anomaly_scores" in table_names(con) else None
    return EvaluationRun(keys, summary, written, scored, len(labels))
