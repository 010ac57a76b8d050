"""The injection protocol: its arithmetic, the recomputed features, the counts and the tables."""

import zlib

import numpy as np
import pandas as pd
import pytest

from crm_pipeline.cli import main
from crm_pipeline.detectors.scoring import DetectorSpec
from crm_pipeline.evaluation.protocol import (
    COUNTS,
    Protocol,
    evaluate_customers,
    evaluation_customers,
    injected_frames,
    plan_injections,
    summarise,
)
from crm_pipeline.evaluation.report import best_detector, paper_table, result_line, write_results
from crm_pipeline.warehouse.customer_tables import register_run_customers

PROTOCOL = Protocol(seed=3)


def test_injections_follow_the_papers_formula_in_the_held_out_part(planted):
    frame = planted.clean
    plan = plan_injections("db1.CLEAN", "amount_out", frame, PROTOCOL)
    split = int(len(frame) * 0.8)
    # replay the seeded draws: positions first, then one N(7, 2.5) factor per injection
    rng = np.random.default_rng([3, zlib.crc32(b"db1.CLEAN|amount_out")])
    positions = np.sort(rng.choice(np.arange(split, len(frame)), size=10, replace=False))
    assert [day for *_, day, _ in plan] == [frame.days[i].astype(object) for i in positions]
    for (_, _, variant, _, delta), i in zip(plan, positions, strict=True):
        e = frame.y[i]
        assert delta == pytest.approx(e * rng.normal(7, 2.5) + 2 * frame.y.max() - e, abs=0.005)
        assert variant == list(positions).index(i)
    assert plan == plan_injections("db1.CLEAN", "amount_out", frame, PROTOCOL)  # seeded
    counterparts = plan_injections("db1.CLEAN", "counterparts_out", frame, PROTOCOL)
    assert all(float(delta).is_integer() for *_, delta in counterparts)


def test_injected_copies_get_their_lag_features_recomputed(planted):
    frame = planted.clean
    plan = plan_injections("db1.CLEAN", "amount_out", frame, PROTOCOL)[:2]
    table = pd.DataFrame(plan, columns=["partition_key", "measure", "variant", "day", "delta"])
    with planted.warehouse.connect() as con:
        register_run_customers(con, ["db1.CLEAN"])
        copies = injected_frames(con, table, 730)
    assert set(copies) == {("db1.CLEAN", "amount_out", 0), ("db1.CLEAN", "amount_out", 1)}
    _, _, _, day, delta = plan[0]
    copy = copies["db1.CLEAN", "amount_out", 0]
    i = int(np.searchsorted(frame.days, np.datetime64(day, "D")))
    lag1 = frame.feature_names.index("y_lag1")
    assert np.array_equal(copy.days, frame.days)
    assert copy.y[i] == pytest.approx(frame.y[i] + delta)
    assert copy.X[i + 1, lag1] == pytest.approx(frame.y[i] + delta)  # the next day's lag sees it
    assert np.array_equal(copy.X[: i + 1], frame.X[: i + 1])  # nothing before it moves
    assert np.array_equal(np.delete(copy.y, i), np.delete(frame.y, i))


def test_counts_add_up_and_obvious_injections_are_found(planted):
    specs = [DetectorSpec("kmeans"), DetectorSpec("sgd", {"criterion": "additive_absolute"})]
    with planted.warehouse.connect() as con:
        assert evaluation_customers(con, None) == ["db1.CLEAN", "db1.SPIKY"]
        counts = evaluate_customers(
            con, ["db1.CLEAN", "db1.SHORT"], specs, measures=["amount_out"], protocol=PROTOCOL, n_jobs=1
        )
    held_out = len(planted.clean) - int(len(planted.clean) * 0.8)
    assert list(counts["partition_key"]) == ["db1.CLEAN", "db1.CLEAN"]  # db1.SHORT: too little history
    assert (counts["tp"] + counts["fn"] == 10).all()
    assert (counts[["tp", "fp", "tn", "fn"]].sum(axis=1) == 10 * held_out).all()
    assert (counts[["fp_planted", "tn_planted"]] == 0).all(axis=None)  # no known anomalies given
    summary = summarise(counts)
    assert summary.set_index("detector").loc["sgd/additive_absolute", "recall"] >= 0.9


def test_known_anomalous_days_are_no_false_positives(planted):
    """The spiky customer's own spikes, flagged in the held-out part, are false positives for the
    paper's counting; given as planted days, they move to fp_planted and nothing else changes."""
    specs = [DetectorSpec("sgd", {"criterion": "additive_absolute"}), DetectorSpec("kmeans")]
    with planted.warehouse.connect() as con:
        strict, known = (
            evaluate_customers(
                con, ["db1.SPIKY"], specs, ["amount_out"], protocol=PROTOCOL, n_jobs=1, planted_days=days
            ).set_index("detector")
            for days in (None, {"db1.SPIKY": np.array(planted.spike_days)})
        )
    held_out = planted.spiky.days[int(len(planted.spiky) * 0.8) :]
    spikes_held_out = int(np.isin(held_out, planted.spike_days).sum())
    assert spikes_held_out >= 1
    pd.testing.assert_frame_equal(known[["tp", "fn"]], strict[["tp", "fn"]])
    pd.testing.assert_series_equal(known["fp"] + known["fp_planted"], strict["fp"], check_names=False)
    pd.testing.assert_series_equal(known["tn"] + known["tn_planted"], strict["tn"], check_names=False)
    # each copy counts each held-out spike once (unless it is the injected day)
    assert (known["fp_planted"] + known["tn_planted"] >= 10 * spikes_held_out - 10).all()
    sgd = known.loc["sgd/additive_absolute"]
    assert sgd["fp_planted"] > 0  # the spikes are flagged: no longer false positives
    [row] = summarise(known.loc[["sgd/additive_absolute"]].reset_index()).to_dict("records")
    assert row["precision"] == pytest.approx(sgd["tp"] / (sgd["tp"] + sgd["fp"]))
    assert row["precision_strict"] == pytest.approx(sgd["tp"] / (sgd["tp"] + sgd["fp"] + sgd["fp_planted"]))
    assert row["precision"] > row["precision_strict"]


def test_summary_rates_by_hand():
    counts = pd.DataFrame(
        [
            ("a", "amount_out", "kmeans", "unsupervised", None, 8, 2, 88, 2, 2, 8),
            ("b", "amount_out", "kmeans", "unsupervised", None, 10, 8, 80, 0, 0, 0),
            ("c", "amount_out", "kmeans", "unsupervised", "DetectorError: short", 0, 0, 0, 0, 0, 0),
        ],
        columns=["partition_key", "measure", "detector", "family", "error", *COUNTS],
    )
    [row] = summarise(counts).to_dict("records")
    assert (row["tp"], row["fp"], row["tn"], row["fn"], row["series"], row["failed"]) == (
        18,
        10,
        168,
        2,
        2,
        1,
    )
    assert row["precision"] == pytest.approx(18 / 28) and row["recall"] == pytest.approx(18 / 20)
    assert row["precision_strict"] == pytest.approx(18 / 30)  # the 2 flags on planted days counted false
    assert row["accuracy"] == pytest.approx(186 / 198)  # planted days left out
    assert row["f1"] == pytest.approx(2 * (18 / 28) * (18 / 20) / (18 / 28 + 18 / 20))
    assert "| kmeans" in paper_table(summarise(counts), "unsupervised")
    assert "no detector of this family" in paper_table(summarise(counts), "forecasting")
    assert result_line(best_detector(summarise(counts))) == (
        "RESULT best_detector=kmeans measure=amount_out precision=0.643 recall=0.900 f1=0.750 "
        "precision_strict=0.600"
    )
    assert "precision_strict" in paper_table(summarise(counts), "unsupervised")
    unlabelled = summarise(counts.assign(fp_planted=0, tn_planted=0))
    assert "precision_strict" not in paper_table(unlabelled, "unsupervised")


def test_results_are_appended_to_a_table_written_before_the_planted_counts(tmp_path):
    from crm_pipeline.warehouse.store import Warehouse

    old_columns = (
        "run_id VARCHAR, evaluated_at TIMESTAMP, family VARCHAR, detector VARCHAR, measure VARCHAR, "
        "series INTEGER, failed INTEGER, tp BIGINT, fp BIGINT, tn BIGINT, fn BIGINT, accuracy DOUBLE, "
        '"precision" DOUBLE, recall DOUBLE, f1 DOUBLE, protocol VARCHAR'
    )
    counts = pd.DataFrame(
        [("a", "amount_out", "kmeans", "unsupervised", None, 8, 2, 88, 2, 2, 8)],
        columns=["partition_key", "measure", "detector", "family", "error", *COUNTS],
    )
    with Warehouse(tmp_path / "w.duckdb").connect() as con:
        con.execute(f"CREATE TABLE evaluation_results ({old_columns})")
        con.execute("INSERT INTO evaluation_results (run_id, detector) VALUES ('old', 'kmeans')")
        assert write_results(con, summarise(counts), "new", PROTOCOL) == 1
        rows = con.execute(
            "SELECT run_id, tp, fp_planted, tn_planted, round(precision_strict, 3) FROM evaluation_results "
            "ORDER BY run_id"
        ).fetchall()
    assert rows == [("new", 8, 2, 8, 0.667), ("old", None, None, None, None)]  # 8 / (8 + 2 + 2)


def test_evaluate_command_prints_both_tables_and_a_result_line(planted_copy, tmp_path, capsys):
    config = tmp_path / "crm.yaml"
    config.write_text(f"warehouse:\n  path: {planted_copy.warehouse.path}\n")
    main(["evaluate", "--config", str(config), "--detectors", "kmeans", "sgd", "--measures", "amount_out",
          "--workers", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert "Table 2" in out and "| sgd/additive" in out and "Table 3" in out and "| kmeans" in out
    assert out.strip().splitlines()[-1].startswith("RESULT best_detector=")
    with planted_copy.warehouse.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM evaluation_results").fetchall() == [(2,)]


def test_an_empty_warehouse_is_named_not_a_catalog_error(tmp_path):
    from crm_pipeline.warehouse.store import Warehouse

    with (
        Warehouse(tmp_path / "empty.duckdb").connect() as con,
        pytest.raises(ValueError, match="no customer_history or lag_features yet"),
    ):
        evaluation_customers(con, 5)


def test_labels_on_an_empty_warehouse_name_what_is_missing(tmp_path):
    """With labels asked for, an empty warehouse still names its missing features."""
    from crm_pipeline.evaluation.run import run_evaluation
    from crm_pipeline.warehouse.store import Warehouse
    from crm_pipeline_tests.evaluation.test_labels import label_db
    from crm_pipeline_tests.helpers import sqlite_runner

    label_db(tmp_path, "db1", [("transactions", "t1", "X", "2019-01-02", "spike")])
    with (
        Warehouse(tmp_path / "empty.duckdb").connect() as con,
        pytest.raises(ValueError, match="no customer_history or lag_features yet"),
    ):
        run_evaluation(con, [DetectorSpec("kmeans")], PROTOCOL, "r", 2, ["amount_out"],
                       labels_from=[sqlite_runner(tmp_path)])  # fmt: skip
