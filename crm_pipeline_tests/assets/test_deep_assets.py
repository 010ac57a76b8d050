"""The deep training, scoring and explanation assets materialized in-process, and the monthly
retrain."""

from datetime import datetime
from pathlib import Path

import pytest
import torch
from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    instance_for_test,
    materialize,
)

from crm_pipeline.assets.deep import deep_anomaly_scores, deep_models
from crm_pipeline.assets.explanations import anomaly_explanations
from crm_pipeline.automation import DEEP_ASSETS, build_automation
from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME
from crm_pipeline.resources import ComputeDeviceResource, WarehouseResource
from crm_pipeline_tests.detectors.crm_planted import EVENTS, KEYS
from crm_pipeline_tests.helpers import count, failure_message, range_tags

TRAIN = {"epochs": 20, "seed": 2}


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        inst.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, KEYS)
        yield inst


def run(planted, instance, assets, config, device="cpu"):
    return materialize(
        assets,
        instance=instance,
        resources={
            "warehouse": WarehouseResource(path=str(planted.warehouse.path)),
            "compute": ComputeDeviceResource(device=device),
        },
        run_config={"ops": config},
        tags=range_tags(KEYS[0], KEYS[-1]),
        raise_on_error=False,
    )


def test_train_score_and_explain_both_models_in_one_run_twice_without_duplicates(crm_planted_copy, instance):
    wh = crm_planted_copy.warehouse
    for _ in range(2):
        result = run(crm_planted_copy, instance, DEEP_ASSETS, {"deep_models": {"config": TRAIN}})
        assert result.success
    trained = result.asset_materializations_for_node("deep_models")[0].metadata
    assert trained["device"].value == "cpu" and trained["skipped_customers"].value == 1
    assert "data:image/png;base64," in trained["loss_curve"].value
    assert set(trained["epoch_losses"].value) == {"deepant", "lstm_autoencoder"}
    assert "deepant-per_customer-" in trained["versions"].value and "db1.FEW" in trained["skipped"].value
    scored = result.asset_materializations_for_node("deep_anomaly_scores")[0].metadata
    assert scored["dagster/row_count"].value == 2 * (EVENTS - 10) + 2 * EVENTS  # deepant's warm-up
    assert scored["unscored_customers"].value == 2 and "6 events" in scored["unscored"].value
    assert crm_planted_copy.planted_record in scored["top_anomalies"].value
    explained = result.asset_materializations_for_node("anomaly_explanations")[0].metadata
    assert explained["events_explained"].value["deepant"] > 0
    assert explained["column_importance"].value.index("quotation_subtotal_eur") < explained[
        "column_importance"
    ].value.index("trading_currency_code")
    assert "data:image/png;base64," in explained["importance_plot"].value
    assert crm_planted_copy.planted_record in Path(explained["report"].value).read_text()
    assert count(wh, "SELECT count(DISTINCT run_id) FROM shap_values") == 1
    assert count(wh, "SELECT count(*) FROM model_registry") == 4  # two runs x two models
    assert count(wh, "SELECT count(DISTINCT run_id) FROM anomaly_scores") == 1
    repeated = "SELECT record_id, detector FROM anomaly_scores GROUP BY ALL HAVING count(*) > 1"
    assert count(wh, f"SELECT count(*) FROM ({repeated})") == 0


def test_single_customer_explanation_run_shows_its_plot(crm_planted_copy, instance):
    assert run(crm_planted_copy, instance, DEEP_ASSETS, {"deep_models": {"config": {"epochs": 5}}}).success
    result = materialize(
        [anomaly_explanations],
        instance=instance,
        resources={
            "warehouse": WarehouseResource(path=str(crm_planted_copy.warehouse.path)),
            "compute": ComputeDeviceResource(device="cpu"),
        },
        run_config={"ops": {"anomaly_explanations": {"config": {"models": ["deepant"], "min_severity": 1}}}},
        partition_key="db1.ODD",
    )
    metadata = result.asset_materializations_for_node("anomaly_explanations")[0].metadata
    assert metadata["customer_plot"].value.count("data:image/png;base64,") == 1


def test_scoring_without_a_trained_model_fails_naming_the_fix(crm_planted_copy, instance):
    result = run(crm_planted_copy, instance, [deep_anomaly_scores], {})
    assert not result.success
    assert "deepant: model_registry has no trained 'deepant' model: run the deep training job first" in (
        failure_message(result)
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"models": ["transformer"]}, "unknown deep model 'transformer'"),
        ({"thresholds": [0.7, 0.2]}, "thresholds must ascend"),
        ({"until": "last month"}, "Invalid isoformat"),
    ],
)
def test_bad_training_config_fails_before_any_work(crm_planted_copy, instance, config, message):
    result = run(crm_planted_copy, instance, [deep_models], {"deep_models": {"config": config}})
    assert not result.success
    assert "bad run configuration" in failure_message(result) and message in failure_message(result)
    assert not (crm_planted_copy.warehouse.path.parent / "models").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_on_a_machine_without_it_fails_clearly(crm_planted_copy, instance):
    result = run(crm_planted_copy, instance, [deep_models], {}, device="cuda")
    assert not result.success
    assert "deep_models: compute device 'cuda' was requested" in failure_message(result)


def test_monthly_retrain_is_one_run_over_every_customer_up_to_the_closed_month():
    monthly_deep_retrain = build_automation().schedules[1]
    with instance_for_test() as persistent:  # schedule contexts need a persistent instance
        december = datetime(2026, 12, 2, 4)
        assert isinstance(monthly_deep_retrain(build_schedule_context(persistent, december)), SkipReason)
        persistent.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, KEYS)
        request = monthly_deep_retrain(build_schedule_context(persistent, december))
    assert isinstance(request, RunRequest) and request.run_key == "deep-retrain-2026-11"
    assert request.run_config["ops"]["deep_models"]["config"]["until"] == "2026-11-30"
    assert request.partition_key_range.start == KEYS[0] and request.partition_key_range.end == KEYS[-1]
