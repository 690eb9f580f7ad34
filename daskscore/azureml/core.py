"""``azureml.core`` (v1): ``Model``, ``Run``, ``Workspace``, ``Dataset``,
``Datastore``, ``Experiment``, ``Environment``, ``ScriptRunConfig``,
``ComputeTarget``, ``RunConfiguration``, backed by daskscore.

Also behind ``azureml.core.model``, ``azureml.core.run``, ``azureml.core.dataset``,
``azureml.core.workspace``, ``azureml.core.datastore``, ``azureml.core.experiment``
(see ``daskscore.azureml._hook.MODULES``). The notebook names come from
``_notebook`` (``Workspace.from_config``, datasets on ``(datastore, path)``), the
entry-script names from ``model`` and ``run``. Any other name fails with one line
saying daskscore does not provide it.
"""

from __future__ import annotations

from typing import Any

from ._hook import not_provided
from ._notebook import (
    AmlCompute,
    ComputeTarget,
    Dataset,
    Datastore,
    Environment,
    Experiment,
    RunConfiguration,
    ScriptRunConfig,
    Workspace,
)
from .model import Model
from .run import Run

__all__ = ["AmlCompute", "ComputeTarget", "Dataset", "Datastore", "Environment",
           "Experiment", "Model", "Run", "RunConfiguration", "ScriptRunConfig",
           "Workspace"]


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    raise not_provided(f"azureml.core.{name}")
