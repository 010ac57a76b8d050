"""The anomaly_scores asset materialized in-process: config, metadata, plot, re-runs."""

import pytest
from dagster import DagsterInstance, materialize

from crm_pipeline.assets.evaluation import detector_evaluation
from crm_pipeline.assets.explanations import tree_explanations
from crm_pipeline.assets.scoring import anomaly_scores
from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME
from crm_pipeline.resources import SourceResource, WarehouseResource
from crm_pipeline_tests.evaluation.test_labels import label_db
from crm_pipeline_tests.helpers import count, failure_message, range_tags

KEYS = ["db1.CLEAN", "db1.SHORT", "db1.SPIKY"]
CONFIG = {"detectors": [{"name": "kmeans"}, {"name": "svr", "params": {"kernel": "linear"}}], "workers": 2}


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        inst.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, KEYS)
        yield inst


def score(planted, instance, keys, config=CONFIG):
    tags = range_tags(keys[0], keys[-1])
    return materialize(
        [anomaly_scores],
        instance=instance,
        resources={"warehouse": WarehouseResource(path=str(planted.warehouse.path))},
        run_config={"ops": {"anomaly_scores": {"config": config}}},
        tags=tags,
        raise_on_error=False,
    )


def test_backfill_of_three_customers_is_one_run_with_metadata(planted_copy, instance):
    planted = planted_copy
    for _ in range(2):
        result = score(planted_copy, instance, KEYS)
        assert result.success
        [check] = result.get_asset_check_evaluations()
        assert check.check_name == "no_duplicate_scores" and check.passed
    md = result.asset_materializations_for_node("anomaly_scores")[0].metadata
    assert md["customers"].value == 3 and md["failed_series"].value == 4  # db1.SHORT: 2 measures x 2
    assert "kmeans" in md["per_detector"].value and "svr_linear/additive" in md["per_detector"].value
    assert "too little history" in md["failures"].value
    assert md["anomalies"].value > 0 and "db1.SPIKY" in md["top_anomalies"].value
    assert not any(k.startswith("plot_") for k in md)
    assert (
        count(
            planted.warehouse,
            "SELECT count(DISTINCT run_id) FROM anomaly_scores WHERE detector = 'kmeans' "
            "AND partition_key IN ('db1.CLEAN', 'db1.SPIKY')",
        )
        == 1
    )


def test_single_customer_run_shows_a_plot(planted_copy, instance):
    result = score(
        planted_copy, instance, ["db1.SPIKY"], {"detectors": [{"name": "agglomerative"}], "workers": 1}
    )
    md = result.asset_materializations_for_node("anomaly_scores")[0].metadata
    assert {"plot_amount_out", "plot_counterparts_out"} <= set(md)
    assert md["plot_amount_out"].value.count("data:image/png;base64,") == 1


def test_bad_detector_config_fails_the_run_before_any_work(planted_copy, instance):
    result = score(
        planted_copy, instance, ["db1.SPIKY"], {"detectors": [{"name": "kmeans", "params": {"q": 1}}]}
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "bad run configuration: detector 'kmeans': bad parameters {'q': 1}" in str(
        failure.event_specific_data
    )


def test_batch_of_no_customers_is_refused_before_any_work(planted_copy, instance):
    result = score(planted_copy, instance, ["db1.SPIKY"], {"batch_customers": 0})
    assert not result.success
    message = failure_message(result)
    assert "batch_customers" in message and "greater than 0" in message, message
    no_scores = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'anomaly_scores'"
    assert count(planted_copy.warehouse, no_scores) == 0, "nothing written"


def test_detector_evaluation_asset_shows_both_tables(planted_copy, instance, tmp_path):
    """With the source's planted labels: their days are left out of the protocol's false
    positives, the strict precision is shown beside, and the scores are counted against them."""
    label_db(tmp_path, "db1", [("transactions", f"t{i}", "SPIKY", str(d), "spike")
                               for i, d in enumerate(planted_copy.spike_days)])  # fmt: skip
    config = {"customers": 2, "detectors": [{"name": "kmeans"}, {"name": "sgd"}], "measures": ["amount_out"],
              "injections": 5, "workers": 1, "planted_labels": True}  # fmt: skip
    result = materialize(
        [detector_evaluation],
        instance=instance,
        resources={
            "warehouse": WarehouseResource(path=str(planted_copy.warehouse.path)),
            "source": SourceResource(sqlite_dir=str(tmp_path)),
        },
        run_config={"ops": {"detector_evaluation": {"config": config}}},
    )
    md = result.asset_materializations_for_node("detector_evaluation")[0].metadata
    assert md["customers"].value == 2 and md["dagster/row_count"].value == 2
    assert (
        "| kmeans" in md["table_3_unsupervised"].value and "| sgd/additive" in md["table_2_forecasting"].value
    )
    assert 0 <= md["best_recall"].value <= 1
    assert md["planted_labels"].value == 3 and "left out of fp and tn" in md["counting"].value
    assert md["best_precision_strict"].value <= md["best_precision"].value
    assert "no anomaly_scores yet" in md["against_planted_labels"].value  # nothing scored in this warehouse


def test_tree_explanations_follow_the_scores_in_one_run(planted_copy, instance):
    """Scoring and explaining one customer in one run: SHAP rows of the tree detectors, the
    report and the customer's plot in the metadata; an unexplainable detector is refused."""
    detectors = [{"name": "decision_tree"}, {"name": "isolation_forest"}]
    tags = range_tags("db1.SPIKY", "db1.SPIKY")
    resources = {"warehouse": WarehouseResource(path=str(planted_copy.warehouse.path))}

    def run(explain_with):
        config = {
            "anomaly_scores": {"config": {"detectors": detectors, "measures": ["amount_out"], "workers": 1}},
            "tree_explanations": {"config": {"detectors": explain_with, "per_customer": 3, "workers": 1}},
        }
        return materialize([anomaly_scores, tree_explanations], instance=instance, resources=resources,
                           run_config={"ops": config}, tags=tags, raise_on_error=False)  # fmt: skip

    result = run(detectors)
    assert result.success
    md = result.asset_materializations_for_node("tree_explanations")[0].metadata
    assert set(md["events_explained"].value) == {"decision_tree/additive", "isolation_forest"}
    assert md["dagster/row_count"].value == count(planted_copy.warehouse, "SELECT count(*) FROM shap_values")
    assert "customer_plot" in md and "importance_plot" in md
    assert md["report"].value.endswith("report.html")
    refused = run([{"name": "adaboost"}])
    [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "bad run configuration: no tree explanation for detector 'adaboost'" in str(
        failure.event_specific_data
    )
