"""anomaly_scores against planted labels read from every tenant database."""

import sqlite3

import pytest

from crm_pipeline.detectors.scoring import DetectorSpec, score_customers
from crm_pipeline.evaluation.labels import planted_days, read_planted_labels, score_against_labels
from crm_pipeline.sources.runner import ExtractionError
from crm_pipeline_tests.helpers import sqlite_runner


def label_db(folder, name: str, rows: list[tuple]) -> None:
    with sqlite3.connect(folder / f"{name}.sqlite") as db:
        db.execute(
            "CREATE TABLE anomaly_labels (entity VARCHAR(20), record_id VARCHAR(40), account_id VARCHAR(40), "
            "event_date DATE, kind VARCHAR(40))"
        )
        db.executemany("INSERT INTO anomaly_labels VALUES (?, ?, ?, ?, ?)", rows)


def test_flags_counted_against_the_planted_days(planted_copy, tmp_path):
    spikes = [str(d) for d in planted_copy.spike_days]
    label_db(
        tmp_path,
        "db1",
        [("transactions", f"t{i}", "SPIKY", day, "spike") for i, day in enumerate(spikes)]
        + [("quotations", "q1", "SPIKY", "2019-01-02", "quotation_subtotal")],  # not a transaction: ignored
    )
    labels = read_planted_labels([sqlite_runner(tmp_path)])
    assert sorted(labels["event_date"].astype(str)) == spikes and set(labels["source_db"]) == {"db1"}
    with planted_copy.warehouse.connect() as con:
        score_customers(
            con, ["db1.CLEAN", "db1.SPIKY"], [DetectorSpec("kmeans")], "r", ["amount_out"], n_jobs=1
        )
        [row] = score_against_labels(con, planted_days(con, labels)).to_dict("records")
    assert (row["detector"], row["tp"], row["fn"], row["labels_planted"]) == ("kmeans", 3, 0, 3)
    assert row["recall"] == 1.0 and row["precision"] == pytest.approx(3 / (3 + row["fp"]))


def test_a_source_without_labels_is_named(tmp_path):
    sqlite3.connect(tmp_path / "tenant_x.sqlite").execute("CREATE TABLE t (a INT)").connection.close()
    with pytest.raises(ExtractionError, match="tenant_x"):
        read_planted_labels([sqlite_runner(tmp_path)])
