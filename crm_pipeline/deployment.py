"""Which executor the jobs run on, chosen by the deployment's settings, not by the code.

The ``execution`` section of the settings file picks one of:

* ``multiprocess`` (the default) or ``in_process``: one machine, ``dagster dev`` or a single daemon;
* ``k8s``: every run is a pod (the instance's ``K8sRunLauncher``); the deep training job's steps
  get their own pods through ``k8s_job_executor`` (``config`` is that executor's config, where the
  GPU node selector and tolerations go), every other job runs its steps in its run pod, in one
  process, which keeps one DuckDB writer per run;
* ``celery``: steps go to Celery workers (``config`` is ``celery_executor``'s); the GPU steps carry
  the ``dagster-celery/queue: gpu`` tag, so only workers started with ``-q gpu`` take them.

dagster-k8s and dagster-celery are imported only when chosen (``pip install .[k8s]`` / ``.[celery]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagster import ExecutorDefinition, in_process_executor

EXECUTORS = ("multiprocess", "in_process", "k8s", "celery")
#: The Celery queue of the steps that need a GPU (``dagster-celery worker start -q gpu``).
GPU_QUEUE = "gpu"


@dataclass(frozen=True)
class JobExecutors:
    """The executor of the GPU job and of every other job (``None``: Dagster's default)."""

    default: ExecutorDefinition | None = None
    gpu: ExecutorDefinition | None = None


def _extra(module: str, extra: str) -> Any:
    """Import an optional integration, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(
            f"execution.executor needs {module.replace('_', '-')}: pip install 'crm_pipeline[{extra}]'"
        ) from exc


def job_executors(execution: dict[str, Any] | None) -> JobExecutors:
    """The executors the ``execution`` settings ask for; an unknown name raises ``ValueError``."""
    execution = execution or {}
    unknown = set(execution) - {"executor", "config"}
    if unknown:
        raise ValueError(f"execution: unknown key(s) {sorted(unknown)}; expected executor and config")
    name = execution.get("executor", "multiprocess")
    config = execution.get("config") or {}
    if name not in EXECUTORS:
        raise ValueError(f"execution.executor must be one of {EXECUTORS}, got {name!r}")
    if config and name in ("multiprocess", "in_process"):
        raise ValueError(f"execution.config is for k8s or celery, not {name}")
    if name == "multiprocess":
        return JobExecutors()
    if name == "in_process":
        return JobExecutors(in_process_executor, in_process_executor)
    if name == "k8s":
        k8s = _extra("dagster_k8s", "k8s")
        return JobExecutors(in_process_executor, k8s.k8s_job_executor.configured(config, name="k8s"))
    celery = _extra("dagster_celery", "celery").celery_executor.configured(config, name="celery")
    return JobExecutors(celery, celery)
