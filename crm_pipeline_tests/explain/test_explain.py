"""SHAP explanations of flagged events: exact additivity for the CNN, attributions that point at
the perturbed column, and SHAP rows written and replaced in the warehouse."""

import numpy as np
import pytest
import torch

from crm_pipeline.detectors.deep.data import DEEP_COLUMNS, sliding_windows
from crm_pipeline.detectors.deep.fit import DeepSettings, customer_model, train_deep
from crm_pipeline.detectors.deep.run import score_and_write, train_and_register
from crm_pipeline.explain.deep import _deep_explainer, _gradient_explainer, explain_events
from crm_pipeline.explain.networks import ForecastError
from crm_pipeline.explain.report import (
    column_importance,
    customer_png,
    importance_png,
    write_report,
)
from crm_pipeline.explain.run import explain_customers
from crm_pipeline.warehouse.keys import customer_file_name
from crm_pipeline_tests.detectors.crm_planted import KEYS
from crm_pipeline_tests.detectors.deep.test_training import events
from crm_pipeline_tests.helpers import count

CPU = torch.device("cpu")
SUBTOTAL = DEEP_COLUMNS.index("quotation_subtotal_eur")
CUSTOMERS = [events("odd", 200, 1, spike_at=140), events("steady", 200, 2)]


@pytest.fixture(scope="module")
def trained():
    return {
        kind: train_deep(CUSTOMERS, DeepSettings(model=kind, epochs=30), CPU)
        for kind in ("deepant", "lstm_autoencoder")
    }


def test_the_exported_cnn_computes_the_models_forecast_error(trained):
    model = customer_model(trained["deepant"], "odd")
    scaled = trained["deepant"].scalers["odd"].transform(CUSTOMERS[0].values)
    windows = torch.from_numpy(np.ascontiguousarray(sliding_windows(scaled, model.span)[:20]))
    ours = model.residuals(windows.unsqueeze(0))[0, :, 0].abs().mean(dim=1)
    exported = ForecastError(model)(windows[:, :-1].transpose(1, 2), windows[:, -1])[:, 0]
    torch.testing.assert_close(exported, ours, atol=1e-5, rtol=1e-5)


def test_deep_explainer_values_add_up_to_the_error_minus_its_expectation(trained):
    explanation = explain_events(trained["deepant"], CUSTOMERS[0], np.array([140, 60, 199]), CPU)
    assert explanation.values.shape == (3, 11, len(DEEP_COLUMNS))  # the event and 10 before it
    np.testing.assert_allclose(
        explanation.values.sum(axis=(1, 2)) + explanation.expected, explanation.outputs, rtol=1e-4, atol=1e-5
    )


def test_windows_packed_into_one_shap_sample_get_the_values_they_get_alone(trained):
    model = customer_model(trained["deepant"], "odd")
    scaled = trained["deepant"].scalers["odd"].transform(CUSTOMERS[0].values)
    windows = torch.from_numpy(np.ascontiguousarray(sliding_windows(scaled, model.span)))
    x, background = windows[[50, 130, 180]], windows[:40]
    together, outputs, expected = _deep_explainer(model, x, background, CPU)
    for i in range(3):
        alone, output, alone_expected = _deep_explainer(model, x[i : i + 1], background, CPU)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-4, atol=1e-6)
        assert outputs[i] == pytest.approx(output[0]) and expected == pytest.approx(alone_expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["deepant", "lstm_autoencoder"])
def test_a_planted_anomaly_is_explained_by_the_perturbed_column_at_its_own_step(trained, kind):
    explanation = explain_events(trained[kind], CUSTOMERS[0], np.array([140]), CPU)
    magnitude = np.abs(explanation.values[0])
    step, column = np.unravel_index(magnitude.argmax(), magnitude.shape)
    assert (step, DEEP_COLUMNS[column]) == (0, "quotation_subtotal_eur")
    assert magnitude[:, SUBTOTAL].sum() > 0.8 * magnitude.sum()
    assert explanation.outputs[0] > 10 * explanation.expected


def test_explanations_are_stored_replaced_and_reported(crm_planted_copy, tmp_path):
    wh = crm_planted_copy.warehouse
    train_and_register(wh, KEYS, DeepSettings(epochs=25, seed=1), CPU, "train")
    with wh.connect() as con:
        score_and_write(con, KEYS, "deepant", CPU, "score")
        for run_id in ("explain-1", "explain-2"):
            run = explain_customers(con, KEYS, "deepant", CPU, run_id, min_severity=2, per_customer=3)
        assert run.events > 0 and run.rows == run.events * 11 * len(DEEP_COLUMNS)
        nothing = explain_customers(con, KEYS, "lstm_autoencoder", CPU, "explain-3")  # never scored
        assert (nothing.versions, nothing.rows) == ((), 0)
        importance = column_importance(con)
        assert importance.iloc[0]["column_name"] == "quotation_subtotal_eur"
        report = write_report(con, tmp_path / "report", importance, importance_png(importance, "t"))
        assert crm_planted_copy.planted_record in report.read_text()
        assert (tmp_path / "report" / "column_importance.png").read_bytes()[:4] == b"\x89PNG"
        page = tmp_path / "report" / "customers" / customer_file_name("db1.ODD", ".html")
        assert f"customers/{page.name}" in report.read_text()
        assert (
            crm_planted_copy.planted_record in page.read_text()
            and "quotation_subtotal_eur" in page.read_text()
        )
        assert customer_png(con, "db1.ODD")[:4] == b"\x89PNG"
    assert count(wh, "SELECT count(DISTINCT run_id) FROM shap_values") == 1
    per_customer = (
        "SELECT max(n) FROM (SELECT count(DISTINCT record_id) AS n FROM shap_values GROUP BY partition_key)"
    )
    assert count(wh, per_customer) <= 3
    assert (
        count(wh, "SELECT count(*) FROM shap_values WHERE record_id = ?", [crm_planted_copy.planted_record])
        > 0
    )


def test_customers_scored_by_different_versions_are_each_explained_by_their_own(crm_planted_copy):
    wh = crm_planted_copy.warehouse
    train_and_register(wh, KEYS, DeepSettings(epochs=2, seed=1), CPU, "monthly")
    train_and_register(wh, ["db1.ODD"], DeepSettings(epochs=2, seed=1), CPU, "backfill")
    with wh.connect() as con:
        versions, _, _ = score_and_write(con, KEYS, "deepant", CPU, "score")
        run = explain_customers(con, KEYS, "deepant", CPU, "explain", min_severity=1, per_customer=2)
        assert run.versions == tuple(versions) and len(versions) == 2
        mismatched = (
            "SELECT count(*) FROM shap_values AS s JOIN anomaly_scores AS a "
            "ON a.partition_key = s.partition_key AND a.record_id = s.record_id AND a.detector = s.detector "
            "WHERE s.model_version <> a.model_version"
        )
        assert con.execute(mismatched).fetchall() == [(0,)]
        assert con.execute("SELECT count(DISTINCT model_version) FROM shap_values").fetchall() == [(2,)]


def test_by_default_every_flagged_event_is_explained(crm_planted_copy):
    wh = crm_planted_copy.warehouse
    train_and_register(wh, KEYS, DeepSettings(epochs=5, seed=1), CPU, "train")
    with wh.connect() as con:
        score_and_write(con, KEYS, "deepant", CPU, "score")
        run = explain_customers(con, KEYS, "deepant", CPU, "explain")
    flagged = count(wh, "SELECT count(*) FROM anomaly_scores WHERE detector = 'deepant' AND severity >= 1")
    assert run.events == flagged > 3
    assert count(wh, "SELECT count(DISTINCT (partition_key, record_id)) FROM shap_values") == flagged


def test_the_autoencoders_first_events_are_explained_by_the_first_window(trained):
    """No window ends at event 3, but the first window reconstructs it: its steps run from the
    event 3 back (3) to 6 events after it (-6). The forecaster never scores such events."""
    explanation = explain_events(trained["lstm_autoencoder"], CUSTOMERS[0], np.array([3, 140]), CPU)
    assert explanation.steps.tolist() == [list(range(-6, 4)), list(range(10))]
    assert np.isfinite(explanation.values).all() and explanation.values.shape == (2, 10, 7)
    with pytest.raises(ValueError, match="does not score events before position 10"):
        explain_events(trained["deepant"], CUSTOMERS[0], np.array([3]), CPU)


def test_packed_expected_gradients_equal_one_window_explained_alone(trained):
    """The first window of a pack is drawn against the same background windows and points as
    when it is explained alone, so its values are the same; the others are their own."""
    model = customer_model(trained["lstm_autoencoder"], "odd")
    scaled = trained["lstm_autoencoder"].scalers["odd"].transform(CUSTOMERS[0].values)
    windows = torch.from_numpy(np.ascontiguousarray(sliding_windows(scaled, model.span)))
    x, bg = windows[100:110], windows[:50]
    packed, outputs, _ = _gradient_explainer(model, x, bg, CPU, seed=3)
    alone, first_output, _ = _gradient_explainer(model, x[:1], bg, CPU, seed=3)
    np.testing.assert_allclose(packed[0], alone[0], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(outputs[0], first_output[0], rtol=1e-5)
    assert packed.shape == (10, model.span, 7) and not np.allclose(packed[1], packed[0])
