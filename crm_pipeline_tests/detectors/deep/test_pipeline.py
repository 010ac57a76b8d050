"""The deep detectors on a real warehouse: events read from crm_events, a model version
trained and registered, saved and loaded, events scored into anomaly_scores."""

import numpy as np
import pytest
import torch

from crm_pipeline.detectors.deep import artifacts
from crm_pipeline.detectors.deep.artifacts import (
    ModelMismatchError,
    check_columns,
    load_model,
    newest_versions,
)
from crm_pipeline.detectors.deep.data import DEEP_COLUMNS, load_events
from crm_pipeline.detectors.deep.device import DeviceUnavailableError, resolve_device
from crm_pipeline.detectors.deep.fit import DeepSettings, score_events
from crm_pipeline.detectors.deep.run import score_and_write, train_and_register
from crm_pipeline_tests.detectors.crm_planted import EVENTS, KEYS
from crm_pipeline_tests.helpers import count

CPU = torch.device("cpu")
SETTINGS = DeepSettings(epochs=25, seed=1)


def test_events_come_in_process_order_with_bad_values_repaired(crm_planted_copy):
    wh = crm_planted_copy.warehouse
    with wh.connect() as con:
        con.execute(
            "UPDATE crm_events SET quotation_subtotal_eur = CASE quotation_id "
            "WHEN 'STEADY-Q3' THEN 'nan'::DOUBLE "
            "WHEN 'STEADY-Q4' THEN 'inf'::DOUBLE ELSE quotation_subtotal_eur END"
        )
        customers = load_events(con, KEYS)
    assert [c.partition_key for c in customers] == KEYS
    few, odd, steady = customers
    assert len(few) == 6 and len(odd) == len(steady) == EVENTS
    assert (np.diff(steady.dates.astype("datetime64[D]").astype(int)) >= 0).all()
    assert steady.repaired == {"quotation_subtotal_eur": 2} and odd.repaired == {}
    assert np.isfinite(steady.values).all() and steady.values[3, 2] == steady.values[4, 2] == 0


def test_train_register_score_and_rescore_without_duplicates(crm_planted_copy):
    wh = crm_planted_copy.warehouse
    run = train_and_register(wh, KEYS, SETTINGS, CPU, "run-1")
    assert run.path.exists() and run.path.parent.parent == wh.path.parent / "models"
    assert run.trained.skipped.keys() == {"db1.FEW"}
    with wh.connect() as con:
        row = con.execute(
            "SELECT model, mode, customers, skipped, windows, epochs, device, trained_until "
            "FROM model_registry"
        ).fetchall()
        assert row == [("deepant", "per_customer", 2, 1, 2 * (EVENTS - 10), 25, "cpu", row[0][-1])]
        for run_id in ("score-1", "score-2"):
            versions, written, unscored = score_and_write(con, KEYS, "deepant", CPU, run_id)
        assert versions == [run.version] and written == 2 * (EVENTS - 10)
        assert unscored["db1.FEW"].startswith("6 events")
    assert count(wh, "SELECT count(*) FROM anomaly_scores WHERE measure = 'crm_events'") == written
    assert count(wh, "SELECT count(DISTINCT run_id) FROM anomaly_scores") == 1
    top = count(
        wh,
        "SELECT record_id FROM anomaly_scores WHERE partition_key = 'db1.ODD' ORDER BY score DESC LIMIT 1",
    )
    assert top == crm_planted_copy.planted_record
    assert count(wh, "SELECT error FROM customer_anomalies WHERE partition_key = 'db1.FEW'").startswith(
        "6 events"
    )
    assert count(wh, "SELECT count(*) FROM anomaly_scores WHERE flag AND severity = 0") == 0


def test_saved_model_scores_exactly_as_before(crm_planted, tmp_path):
    with crm_planted.warehouse.connect(read_only=True) as con:
        customers = load_events(con, KEYS)
    from crm_pipeline.detectors.deep.fit import train_deep

    trained = train_deep(customers, DeepSettings(model="lstm_autoencoder", epochs=3), CPU)
    path = tmp_path / "m.pt"
    torch.save(artifacts.to_payload(trained), path)
    loaded = artifacts.from_payload(torch.load(path, weights_only=True))
    before, _ = score_events(trained, customers, CPU)
    after, _ = score_events(loaded, customers, CPU)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a.score, b.score, rtol=1e-6)
        np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-6)


def test_a_model_whose_columns_no_longer_match_is_refused(crm_planted_copy):
    train_and_register(crm_planted_copy.warehouse, KEYS, DeepSettings(epochs=1), CPU, "run-1")
    with crm_planted_copy.warehouse.connect() as con:
        version, trained = load_model(con, "deepant")
    renamed = tuple("subtotal_usd" if c == "quotation_subtotal_eur" else c for c in DEEP_COLUMNS)
    with pytest.raises(
        ModelMismatchError, match=r"missing \['quotation_subtotal_eur'\], new \['subtotal_usd'\]"
    ):
        check_columns(trained, renamed, version)


def test_an_interrupted_save_leaves_no_registry_row_and_no_file(crm_planted_copy, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(artifacts.torch, "save", disk_full)
    wh = crm_planted_copy.warehouse
    with pytest.raises(OSError, match="No space left"):
        train_and_register(wh, KEYS, DeepSettings(epochs=1), CPU, "run-1")
    with wh.connect() as con:
        con.execute(artifacts.REGISTRY_SQL)
        assert con.execute("SELECT count(*) FROM model_registry").fetchall() == [(0,)]
        with pytest.raises(LookupError, match="run the deep training job first"):
            load_model(con, "deepant")
    assert not list((wh.path.parent / "models").rglob("*.pt*"))


def test_cuda_on_a_machine_without_it_is_a_clear_error_or_the_cpu_when_allowed():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown compute device 'gpu'"):
        resolve_device("gpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceUnavailableError, match="'cuda' was requested, but this machine has no CUDA"):
        resolve_device("cuda")
    assert resolve_device("cuda:0", fallback_to_cpu=True) == CPU


def test_each_customer_is_scored_by_the_newest_version_trained_on_it(crm_planted_copy):
    """A backfill that retrains one customer makes a version of its own: scoring the others
    afterwards still uses the version that holds them, and each row names its version."""
    wh = crm_planted_copy.warehouse
    first = train_and_register(wh, KEYS, DeepSettings(epochs=2, seed=1), CPU, "monthly")
    backfill = train_and_register(wh, ["db1.ODD"], DeepSettings(epochs=2, seed=1), CPU, "backfill")
    with wh.connect() as con:
        assert score_and_write(con, ["db1.STEADY"], "deepant", CPU, "s1")[:2] == (
            [first.version],
            EVENTS - 10,
        )
        versions, _, unscored = score_and_write(con, KEYS, "deepant", CPU, "s2")
        assert versions == sorted([first.version, backfill.version])
        assert unscored == {"db1.FEW": "6 events; at least 15 needed (look-back window of 11 + 4)"}
        by_customer = con.execute(
            "SELECT partition_key, list(DISTINCT model_version) FROM anomaly_scores GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert by_customer == [("db1.ODD", [backfill.version]), ("db1.STEADY", [first.version])]
        # a registry written before customer_keys existed gets them from the weight files
        con.execute("UPDATE model_registry SET customer_keys = NULL")
        assert newest_versions(con, "deepant", KEYS) == {
            "db1.ODD": backfill.version,
            "db1.STEADY": first.version,
        }
        assert con.execute("SELECT count(*) FROM model_registry WHERE customer_keys IS NULL").fetchall() == [
            (0,)
        ]
        pinned, _, unscored = score_and_write(con, KEYS, "deepant", CPU, "s3", backfill.version)
        assert pinned == [backfill.version] and unscored["db1.STEADY"] == "not trained in this model version"


def test_scoring_with_a_model_saved_for_other_columns_is_refused_and_keeps_the_scores(crm_planted_copy):
    wh = crm_planted_copy.warehouse
    run = train_and_register(wh, KEYS, DeepSettings(epochs=1), CPU, "run-1")
    with wh.connect() as con:
        score_and_write(con, KEYS, "deepant", CPU, "score-1")
    before = count(wh, "SELECT count(*) FROM anomaly_scores")
    payload = torch.load(run.path, weights_only=True)
    payload["columns"] = ["subtotal_usd" if c == "quotation_subtotal_eur" else c for c in payload["columns"]]
    torch.save(payload, run.path)  # as if the model was trained before a column was renamed
    with (
        wh.connect() as con,
        pytest.raises(ModelMismatchError, match=r"new \['quotation_subtotal_eur'\].*retrain"),
    ):
        score_and_write(con, KEYS, "deepant", CPU, "score-2")
    assert count(wh, "SELECT count(*) FROM anomaly_scores") == before
    assert count(wh, "SELECT count(DISTINCT run_id) FROM anomaly_scores") == 1
