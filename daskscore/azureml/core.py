"""``azureml.core`` (v1): ``Model``, ``Run``, ``Workspace``, ``Dataset``,
``Datastore``, ``Experiment``, backed by daskscore.

Also behind ``azureml.core.model``, ``azureml.core.run``, ``azureml.core.dataset``
(see ``daskscore.azureml._hook.MODULES``). Any other name fails with one line
saying daskscore does not provide it.
"""

from __future__ import annotations

from typing import Any

from ..datasets import Dataset
from ..pipeline.pipeline import Experiment
from ..registry.datastore import Datastore
from ..registry.workspace import Workspace
from ._hook import not_provided
from .model import Model
from .run import Run

__all__ = ["Dataset", "Datastore", "Experiment", "Model", "Run", "Workspace"]


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    raise not_provided(f"azureml.core.{name}")
