"""anomaly_scores against planted labels read from every tenant database."""

import sqlite3

import numpy as np
import pytest

from crm_pipeline.detectors.scoring import DetectorSpec, score_customers
from crm_pipeline.evaluation.labels import (
    days_by_customer,
    planted_days,
    read_planted_labels,
    score_against_labels,
)
from crm_pipeline.sources.runner import ExtractionError
from crm_pipeline_tests.helpers import sqlite_runner


def label_db(folder, name: str, rows: list[tuple]) -> None:
    with sqlite3.connect(folder / f"{name}.sqlite") as db:
        db.execute(
            "CREATE TABLE anomaly_labels (entity VARCHAR(20), record_id VARCHAR(40), account_id VARCHAR(40), "
            "event_date DATE, kind VARCHAR(40))"
        )
        db.executemany("INSERT INTO anomaly_labels VALUES (?, ?, ?, ?, ?)", rows)


def test_flags_counted_against_the_planted_days_of_their_scope(planted_copy, tmp_path):
    """Series detectors against the transaction labels, the deep detectors' CRM events against
    the CRM labels; the protocol takes the transaction days only."""
    spikes = [str(d) for d in planted_copy.spike_days]
    label_db(
        tmp_path,
        "db1",
        [("transactions", f"t{i}", "SPIKY", day, "spike") for i, day in enumerate(spikes)]
        + [("quotations", "q1", "SPIKY", "2019-01-02", "quotation_subtotal")],
    )
    labels = read_planted_labels([sqlite_runner(tmp_path)])
    assert sorted(labels["event_date"].astype(str)) == sorted([*spikes, "2019-01-02"])
    assert set(labels["source_db"]) == {"db1"}
    with planted_copy.warehouse.connect() as con:
        score_customers(
            con, ["db1.CLEAN", "db1.SPIKY"], [DetectorSpec("kmeans")], "r", ["amount_out"], n_jobs=1
        )
        con.execute(  # a deep detector's two scored CRM events: the planted one flagged
            "INSERT INTO anomaly_scores BY NAME SELECT 'db1.SPIKY' AS partition_key, "
            "'crm_events' AS measure, day::DATE AS day, 'deepant' AS detector, flag, "
            "'v' AS model_version, 'r' AS run_id, now() AS scored_at "
            "FROM (VALUES ('2019-01-02', true), ('2019-01-09', false)) AS t(day, flag)"
        )
        days = planted_days(con, labels)
        rows = score_against_labels(con, days).set_index("detector")
    by_customer = days_by_customer(days)  # what the protocol leaves out: transaction days only
    assert list(by_customer) == ["db1.SPIKY"]
    assert np.array_equal(by_customer["db1.SPIKY"], planted_copy.spike_days)
    kmeans, deep = rows.loc["kmeans"], rows.loc["deepant"]
    assert (kmeans["scope"], kmeans["tp"], kmeans["fn"]) == ("transactions", 3, 0)
    assert kmeans["labels_planted"] == 3
    assert kmeans["recall"] == 1.0 and kmeans["precision"] == pytest.approx(3 / (3 + kmeans["fp"]))
    assert (deep["scope"], deep["tp"], deep["fp"], deep["fn"], deep["tn"]) == ("crm_events", 1, 0, 0, 1)
    assert deep["labels_planted"] == 1


def test_a_source_without_labels_is_named(tmp_path):
    sqlite3.connect(tmp_path / "tenant_x.sqlite").execute("CREATE TABLE t (a INT)").connection.close()
    with pytest.raises(ExtractionError, match="tenant_x"):
        read_planted_labels([sqlite_runner(tmp_path)])
