"""Soro et al.'s protocol: the first 80 % of a series trains, ``injections`` anomalies go into the
held-out 20 % one at a time (e* = e * N(7, 2.5) + 2 * max of the series), and every detector is
counted on every copy: the injected day flagged or not, every other flag a false positive.
Where the source knows its own anomalies (the demo's planted labels), a flag on such a day is
no false positive: those days are counted apart (``fp_planted``, ``tn_planted``), and the
paper's strict precision, which counts them false, is reported beside.

An injection changes the day's transactions, so the lag features of the days after it change
too: each copy's features are recomputed with the pipeline's own lag SQL (``lag_statement``),
in a scratch in-memory DuckDB, for all copies of a batch of customers at once.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from crm_pipeline.detectors.base import Detector, DetectorError, SeriesFrame
from crm_pipeline.detectors.scoring import DetectorSpec, build_detectors, check_measures, load_frames
from crm_pipeline.features.lag_sql import lag_statement
from crm_pipeline.warehouse.customer_tables import BATCH_CUSTOMERS, Progress, in_batches, run_customers_label
from crm_pipeline.warehouse.store import table_names
from crm_pipeline.workers import worker_deaths

INJECTED_SERIES_SQL = (Path(__file__).parent / "sql" / "injected_series.sql").read_text()
COUNTS = ("tp", "fp", "tn", "fn", "fp_planted", "tn_planted")
NO_DAYS = np.array([], dtype="datetime64[D]")


@dataclass(frozen=True)
class Protocol:
    """The protocol's parameters (defaults: the paper's)."""

    train_share: float = 0.8
    injections: int = 10
    factor_mean: float = 7.0
    factor_sd: float = 2.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.train_share < 1 or self.injections < 1:
            raise ValueError("protocol: train_share must be within (0, 1) and injections at least 1")


def plan_injections(key: str, measure: str, frame: SeriesFrame, protocol: Protocol) -> list[tuple]:
    """(key, measure, variant, day, delta) for each injection into the held-out part of ``frame``.

    Seeded by the protocol seed and the series, so a re-run injects the same anomalies.
    e* = e * N(mean, sd) + 2 * max(series); counterparts are whole numbers.
    """
    split = int(len(frame) * protocol.train_share)
    rng = np.random.default_rng([protocol.seed, zlib.crc32(f"{key}|{measure}".encode())])
    count = min(protocol.injections, len(frame) - split)
    positions = np.sort(rng.choice(np.arange(split, len(frame)), size=count, replace=False))
    top = float(frame.y.max())
    plan = []
    for variant, i in enumerate(positions):
        e = float(frame.y[i])
        injected = e * rng.normal(protocol.factor_mean, protocol.factor_sd) + 2 * top
        delta = round(injected - e) if measure.startswith("counterparts") else round(injected - e, 2)
        plan.append((key, measure, variant, frame.days[i].astype(object), delta))
    return plan


def injected_frames(
    con: duckdb.DuckDBPyConnection, plan: pd.DataFrame, history_days: int
) -> dict[tuple[str, str, int], SeriesFrame]:
    """The detector input of every planned copy, its lag features recomputed from scratch."""
    base = con.sql(
        "SELECT s.* FROM customer_series AS s JOIN run_customers USING (partition_key)"
    ).to_arrow_table()
    scratch = duckdb.connect()
    try:
        scratch.register("base_arrow", base)
        scratch.register("plan_frame", plan)
        scratch.execute("CREATE TABLE base_series AS SELECT * FROM base_arrow")
        scratch.execute("CREATE TABLE injections AS SELECT * FROM plan_frame")
        scratch.execute(f"CREATE TABLE customer_series AS {INJECTED_SERIES_SQL}")
        scratch.execute("CREATE TABLE run_customers AS SELECT DISTINCT partition_key FROM customer_series")
        scratch.execute(
            "CREATE TABLE customer_history AS "
            "SELECT partition_key, true AS sufficient_history FROM run_customers"
        )
        scratch.execute(f"CREATE TABLE lag_features AS {lag_statement()}")
        measures = sorted(set(plan["measure"]))
        frames = {}
        for copy, measure, frame in load_frames(scratch, measures, history_days, short_histories=True):
            key, injected_measure, variant = copy.rsplit("#", 2)
            if measure == injected_measure:
                frames[key, measure, int(variant)] = frame
        return frames
    finally:
        scratch.close()


def evaluate_series(
    key: str,
    measure: str,
    frame: SeriesFrame,
    copies: Sequence[tuple[np.datetime64, SeriesFrame]],
    detectors: Sequence[Detector],
    train_share: float,
    planted_days: np.ndarray = NO_DAYS,
) -> list[dict]:
    """Fit every detector on the training part once, count it on every injected copy. Days in
    ``planted_days`` (known anomalies of the source) are counted apart, unless injected."""
    split = int(len(frame) * train_share)
    planted = np.isin(frame.days[split:], planted_days)
    rows = []
    for detector in detectors:
        row = {
            "partition_key": key,
            "measure": measure,
            "detector": detector.label,
            "family": detector.family,
            "error": None,
        } | dict.fromkeys(COUNTS, 0)
        try:
            detector.fit(frame[:split])
            for day, copy in copies:
                flags = detector.detect(copy[split:]).flag
                at = int(np.searchsorted(copy.days[split:], day))
                hit = bool(flags[at])
                injected = np.arange(len(flags)) == at
                normal, known = ~injected & ~planted, ~injected & planted
                row["tp"] += hit
                row["fn"] += not hit
                row["fp"] += int((flags & normal).sum())
                row["tn"] += int((~flags & normal).sum())
                row["fp_planted"] += int((flags & known).sum())
                row["tn_planted"] += int((~flags & known).sum())
        except (DetectorError, ValueError, np.linalg.LinAlgError) as exc:
            row = row | dict.fromkeys(COUNTS, 0) | {"error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
    return rows


def evaluate_customers(
    con: duckdb.DuckDBPyConnection,
    partition_keys: Sequence[str],
    specs: Sequence[DetectorSpec],
    measures: Sequence[str] = ("amount_out", "counterparts_out"),
    history_days: int = 730,
    protocol: Protocol = Protocol(),
    n_jobs: int = -1,
    batch_size: int = BATCH_CUSTOMERS,
    progress: Progress | None = None,
    planted_days: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Counts per customer, measure and detector under the injection protocol (customers that
    ``customer_history`` marks as too short are left out, as in scoring). ``planted_days``: per
    customer, the days the source itself marks anomalous (see ``evaluate_series``)."""
    known = planted_days or {}
    detectors = build_detectors(specs)
    check_measures(measures)
    parts: list[dict] = []
    with Parallel(n_jobs=n_jobs, backend="loky") as parallel:

        def evaluate_batch() -> int:
            frames = load_frames(con, measures, history_days)
            plan = [p for key, m, frame in frames for p in plan_injections(key, m, frame, protocol)]
            if not plan:
                return 0
            table = pd.DataFrame(plan, columns=["partition_key", "measure", "variant", "day", "delta"])
            table_day = {(k, m, v): d for k, m, v, d, _ in plan}
            copies = defaultdict(list)
            for (key, m, variant), copy in injected_frames(con, table, history_days).items():
                copies[key, m].append((np.datetime64(table_day[key, m, variant], "D"), copy))
            jobs = (
                delayed(evaluate_series)(
                    key, m, frame, copies[key, m], detectors, protocol.train_share, known.get(key, NO_DAYS)
                )
                for key, m, frame in frames
            )
            with worker_deaths(f"evaluating {run_customers_label(con)}", "nothing was written"):
                batch = [row for rows in parallel(jobs) for row in rows]
            parts.extend(batch)
            return len(batch)

        in_batches(con, partition_keys, evaluate_batch, batch_size, progress)
    return pd.DataFrame(parts, columns=["partition_key", "measure", "detector", "family", "error", *COUNTS])


def summarise(counts: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, precision, recall and F1 per detector (and measure), over customers and injections,
    known anomalous days left out; ``precision_strict`` counts their flags false, as the paper would."""
    ok = counts[counts["error"].isna()]
    table = ok.groupby(["family", "detector", "measure"], as_index=False)[list(COUNTS)].sum()
    failed = counts[counts["error"].notna()].groupby(["detector", "measure"]).size()
    table["series"] = ok.groupby(["family", "detector", "measure"]).size().to_numpy()
    table["failed"] = [
        int(failed.get((d, m), 0)) for d, m in zip(table["detector"], table["measure"], strict=True)
    ]
    total = table[["tp", "fp", "tn", "fn"]].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["accuracy"] = (table["tp"] + table["tn"]) / total
        table["precision"] = table["tp"] / (table["tp"] + table["fp"])
        table["precision_strict"] = table["tp"] / (table["tp"] + table["fp"] + table["fp_planted"])
        table["recall"] = table["tp"] / (table["tp"] + table["fn"])
        table["f1"] = 2 * table["precision"] * table["recall"] / (table["precision"] + table["recall"])
    return table.sort_values(["family", "measure", "detector"], ignore_index=True)


def evaluation_customers(con: duckdb.DuckDBPyConnection, limit: int | None, seed: int = 0) -> list[str]:
    """Up to ``limit`` customers with enough history (all when None), a seeded sample, sorted."""
    tables = table_names(con)
    if not {"customer_history", "lag_features"} <= tables:
        raise ValueError("the warehouse has no customer_history or lag_features yet: materialize them first")
    keys = [
        k
        for (k,) in con.execute(
            "SELECT partition_key FROM customer_history WHERE sufficient_history ORDER BY 1"
        ).fetchall()
    ]
    if limit is not None and len(keys) > limit:
        keys = sorted(np.random.default_rng(seed).choice(keys, size=limit, replace=False).tolist())
    return keys
