"""The scale-out configurations in deploy/: each loads, its executor and tags resolve, and the
GPU step's pod spec comes out with the GPU limit, node selector and toleration (no cluster runs)."""

from pathlib import Path

import pytest
from dagster import DagsterRun
from dagster._config import process_config
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config

from crm_pipeline.definitions import build_definitions
from crm_pipeline.deployment import GPU_QUEUE, job_executors
from crm_pipeline.settings import load_settings

DEPLOY = Path(__file__).parents[1] / "deploy"
JOBS = ("monthly_extraction", "customer_backfill", "deep_training")
INSTANCE_ENV = {"DAGSTER_PG_HOST": "pg", "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "pw"}
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture
def instance_env(monkeypatch):
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("folder", [DEPLOY / "k8s", DEPLOY / "celery", DEPLOY.parent])
def test_instance_configs_pass_dagsters_own_validation(folder, instance_env):
    config, _ = dagster_instance_config(str(folder), "dagster.yaml")
    limits = {
        (t["key"], t.get("value")): t["limit"]
        for t in config["concurrency"]["runs"]["tag_concurrency_limits"]
    }
    assert limits == {("crm_pipeline/warehouse", "write"): 1, ("crm_pipeline/gpu", None): 1}
    assert config["concurrency"]["pools"]["default_limit"] == 1
    if folder != DEPLOY.parent:
        assert "postgres" in config["storage"]


def executors_of(settings: dict) -> dict[str, str]:
    defs = build_definitions(settings)
    return {job: defs.resolve_job_def(job).executor_def.name for job in JOBS}


def step_tags(settings: dict, job: str) -> dict[str, dict[str, str]]:
    plan = create_execution_plan(build_definitions(settings).resolve_job_def(job))
    return {step.key: dict(step.tags) for step in plan.steps}


def test_k8s_gpu_training_step_gets_a_gpu_pod(tmp_path, instance_env):
    from dagster_k8s import K8sRunLauncher, k8s_job_executor
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )

    settings = load_settings(DEPLOY / "k8s" / "crm_pipeline.yaml")
    assert executors_of(settings) == {
        "monthly_extraction": "in_process",
        "customer_backfill": "in_process",
        "deep_training": "k8s",
    }
    executor = process_config(k8s_job_executor.config_schema.config_type, settings["execution"]["config"])
    assert executor.success, executor.errors
    # The run launcher of the instance config, pointed at a dummy kubeconfig instead of the cluster.
    instance, _ = dagster_instance_config(str(DEPLOY / "k8s"), "dagster.yaml")
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    launcher_config = {
        **instance["run_launcher"]["config"],
        "load_incluster_config": False,
        "kubeconfig_file": str(tmp_path / "kubeconfig"),
    }
    processed = process_config(K8sRunLauncher.config_type(), launcher_config)
    assert processed.success, processed.errors
    launcher = K8sRunLauncher.from_config_value(None, processed.value)
    # The step pod as k8s_job_executor composes it: run launcher, executor, op tags, per-step config.
    cfg = executor.value
    tags = step_tags(settings, "deep_training")["deep_models"]
    context = (
        K8sContainerContext.create_for_run(
            DagsterRun(job_name="deep_training"), launcher, include_run_tags=False
        )
        .merge(
            K8sContainerContext(
                volumes=cfg["volumes"], volume_mounts=cfg["volume_mounts"], env_vars=cfg["env_vars"]
            )
        )
        .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
        .merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    cfg["per_step_k8s_config"]["deep_models"]
                )
            )
        )
    )
    job = construct_dagster_k8s_job(
        context.get_k8s_job_config("registry.example.com/crm-pipeline:0.1.0", launcher),
        ["dagster", "api", "execute_step"],
        "dagster-step-deep-models",
        context.run_k8s_config,
        pod_name="dagster-step-deep-models",
        component="step_worker",
    )
    pod = job.spec.template.spec
    container = pod.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert (pod.tolerations[0].key, pod.tolerations[0].effect) == ("nvidia.com/gpu", "NoSchedule")
    assert {m.mount_path for m in container.volume_mounts} >= {"/data", "/run/secrets/crm-source"}
    env = {e.name: e.value for e in container.env}
    assert env["CRM_PIPELINE_CONFIG"] == "/app/deploy/k8s/crm_pipeline.yaml"
    # The settings and the pods agree on where the warehouse and the secret are.
    assert settings["warehouse"]["path"].startswith("/data/")
    assert settings["source"]["connection_string_file"].startswith("/run/secrets/crm-source/")


def test_celery_sends_only_the_training_step_to_the_gpu_queue(monkeypatch):
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("CRM_CELERY_BROKER", "pyamqp://crm@rabbitmq//")
    monkeypatch.setenv("CRM_CELERY_BACKEND", "redis://redis:6379/0")
    path = DEPLOY / "celery" / "crm_pipeline.yaml"
    # The workers read the same file (dagster-celery worker start -y ...).
    worker = get_validated_config(str(path))
    assert worker["broker"] == "pyamqp://crm@rabbitmq//" and worker["config_source"]["task_acks_late"]
    settings = load_settings(path)
    assert set(executors_of(settings).values()) == {"celery"}
    queues = {
        job: {step: tags.get("dagster-celery/queue") for step, tags in step_tags(settings, job).items()}
        for job in JOBS
    }
    assert queues["deep_training"] == {
        "deep_models": GPU_QUEUE,
        "deep_anomaly_scores": None,
        "anomaly_explanations": None,
    }
    assert set(queues["customer_backfill"].values()) == {None}


def test_bad_execution_settings_are_named():
    with pytest.raises(ValueError, match="must be one of .*got 'spark'"):
        job_executors({"executor": "spark"})
    with pytest.raises(ValueError, match="execution.config is for k8s or celery, not multiprocess"):
        job_executors({"executor": "multiprocess", "config": {"broker": "x"}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['queue'\]"):
        job_executors({"executor": "celery", "queue": "gpu"})
    assert executors_of(load_settings()) == dict.fromkeys(JOBS, "multi_or_in_process_executor")
