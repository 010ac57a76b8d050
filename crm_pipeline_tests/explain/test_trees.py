"""TreeExplainer for the classical tree detectors, on the planted series and through the
warehouse (scored by score_customers, explained with the version that scored)."""

import numpy as np
import pytest

from crm_pipeline.detectors.registry import build_detector
from crm_pipeline.detectors.scoring import DetectorSpec, score_customers
from crm_pipeline.explain.report import column_importance
from crm_pipeline.explain.run import ensure_table, explain_tree_customers
from crm_pipeline.explain.trees import explain_days

KEYS = ["db1.CLEAN", "db1.SHORT", "db1.SPIKY"]


@pytest.mark.parametrize("name", ["decision_tree", "random_forest", "isolation_forest"])
def test_values_add_up_to_the_model_output_that_scored_the_day(name, planted):
    data = planted.spiky
    detector = build_detector(name).fit(data)
    detection = detector.detect(data)
    positions = np.flatnonzero(detection.flag)
    e = explain_days(detector, data, positions)
    assert e.values.shape == (len(positions), len(e.features))
    np.testing.assert_allclose(e.expected + e.values.sum(axis=1), e.outputs, rtol=1e-6)
    if name == "isolation_forest":  # the score is 2^(-mean path length / c(n))
        from sklearn.ensemble._iforest import _average_path_length

        c = _average_path_length([detector.model_.max_samples_])[0]
        np.testing.assert_allclose(2 ** (-e.outputs / c), detection.score[positions], rtol=1e-9)
    else:  # the forecast the day was scored against: out of fold, as detect made it
        for covered, model in detector.forecaster_of(data):
            mine = np.isin(positions, covered)
            np.testing.assert_allclose(e.outputs[mine], model.predict(data.X[positions[mine]]))


def test_a_spike_is_isolated_by_its_own_value(planted):
    data = planted.spiky
    detector = build_detector("isolation_forest").fit(data)
    spikes = np.searchsorted(data.days, planted.spike_days)
    e = explain_days(detector, data, spikes)
    # a shorter path is more anomalous: the day's value shortens it most
    assert (e.values.argmin(axis=1) == e.features.index("y")).all()


def test_adaboost_is_refused_by_name(planted):
    with pytest.raises(ValueError, match="no tree explanation for detector 'adaboost'.*decision_tree"):
        explain_days(build_detector("adaboost", {"n_estimators": 5}).fit(planted.spiky), planted.spiky,
                     np.array([0]))  # fmt: skip


def test_explanations_are_stored_with_the_scoring_version_and_replaced(planted_copy):
    specs = [DetectorSpec("decision_tree"), DetectorSpec("isolation_forest")]
    with planted_copy.warehouse.connect() as con:
        score_customers(con, KEYS, specs, "score-1", measures=["amount_out"], history_days=730, n_jobs=1)
        runs = [explain_tree_customers(con, KEYS, s, "explain-1", per_customer=3, n_jobs=2) for s in specs]
        again = explain_tree_customers(con, KEYS, specs[1], "explain-2", per_customer=3, n_jobs=1)
        stored = con.execute(
            "SELECT detector, count(DISTINCT record_id), count(DISTINCT run_id), min(step), max(step), "
            "any_value(explainer) FROM shap_values GROUP BY 1 ORDER BY 1"
        ).fetchall()
        importance = column_importance(con)
        with pytest.raises(
            ValueError,
            match="scored on .* days, but the lag features give 300 of the newest 300: score it again",
        ):
            explain_tree_customers(con, KEYS, specs[0], "explain-3", history_days=300)
        with pytest.raises(ValueError, match="scored by version .*: explain with the parameters"):
            explain_tree_customers(con, KEYS, DetectorSpec("isolation_forest", {"n_estimators": 7}), "x")
    assert [r.detector for r in runs] == ["decision_tree/additive", "isolation_forest"]
    assert all(r.events > 0 for r in runs) and again.rows == runs[1].rows
    assert stored == [
        ("decision_tree/additive", runs[0].events, 1, 0, 0, "tree:forecast"),
        ("isolation_forest", runs[1].events, 1, 0, 0, "tree:path_length"),
    ]
    assert set(importance["detector"]) == {"decision_tree/additive", "isolation_forest"}


def test_an_older_table_gets_its_columns_renamed(tmp_path):
    import duckdb

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute(
        "CREATE TABLE shap_values (partition_key VARCHAR, explained_error DOUBLE, expected_error DOUBLE)"
    )
    ensure_table(con)
    names = [r[0] for r in con.execute("DESCRIBE shap_values").fetchall()]
    assert names == ["partition_key", "explained_output", "expected_output"]
