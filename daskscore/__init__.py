"""daskscore: dataframe-native batch scoring on Dask.

Write an entry script with ``init()`` and ``run(mini_batch)``, describe the inputs
as datasets, and run a :class:`ParallelRunStep` on an embedded cluster or any
Dask cluster. See the README for the semantics and ``docs/architecture.md`` for
how the package is built.

The public names below are imported on first use, so that a runner process
(``python -m daskscore.runner``) loads only what it needs: never the registry,
the pipelines or the client-side engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "ConfigError": "errors",
    "DaskScoreError": "errors",
    "DatasetError": "errors",
    "EntryScriptError": "errors",
    "ErrorThresholdExceeded": "errors",
    "JobError": "errors",
    "MiniBatchError": "errors",
    "NotRegisteredError": "errors",
    "WorkspaceError": "errors",
    "OutputAction": "config",
    "ParallelRunConfig": "config",
    "Dataset": "datasets",
    "FileDataset": "datasets",
    "TabularDataset": "datasets",
    "MiniBatchSpec": "_protocol",
    "EntryScript": "entry_script",
    "MiniBatchContext": "entry_script",
    "JobProgress": "progress",
    "ProgressCallback": "progress",
    "TextProgress": "progress",
    "StepRunResult": "result",
    "ParallelRunStep": "step",
    "map_partitions": "collections",
    "scorer": "collections",
    "close_embedded_clusters": "engine.cluster",
    "DataPath": "registry.datastore",
    "Datastore": "registry.datastore",
    "Model": "registry.model",
    "Workspace": "registry.workspace",
    "Experiment": "pipeline.pipeline",
    "Pipeline": "pipeline.pipeline",
    "PipelineData": "pipeline.pipeline",
    "PipelineRun": "pipeline.pipeline",
    "StepRun": "pipeline.pipeline",
}

__all__ = [
    "ConfigError",
    "DaskScoreError",
    "DataPath",
    "Dataset",
    "DatasetError",
    "Datastore",
    "EntryScript",
    "EntryScriptError",
    "ErrorThresholdExceeded",
    "Experiment",
    "FileDataset",
    "JobError",
    "JobProgress",
    "MiniBatchContext",
    "MiniBatchError",
    "MiniBatchSpec",
    "Model",
    "NotRegisteredError",
    "OutputAction",
    "ParallelRunConfig",
    "ParallelRunStep",
    "Pipeline",
    "PipelineData",
    "PipelineRun",
    "ProgressCallback",
    "StepRun",
    "StepRunResult",
    "TabularDataset",
    "TextProgress",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "close_embedded_clusters",
    "map_partitions",
    "scorer",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'daskscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from ._protocol import MiniBatchSpec
    from .collections import map_partitions, scorer
    from .config import OutputAction, ParallelRunConfig
    from .datasets import Dataset, FileDataset, TabularDataset
    from .engine.cluster import close_embedded_clusters
    from .entry_script import EntryScript, MiniBatchContext
    from .errors import (
        ConfigError,
        DaskScoreError,
        DatasetError,
        EntryScriptError,
        ErrorThresholdExceeded,
        JobError,
        MiniBatchError,
        NotRegisteredError,
        WorkspaceError,
    )
    from .pipeline.pipeline import (
        Experiment,
        Pipeline,
        PipelineData,
        PipelineRun,
        StepRun,
    )
    from .progress import JobProgress, ProgressCallback, TextProgress
    from .registry.datastore import DataPath, Datastore
    from .registry.model import Model
    from .registry.workspace import Workspace
    from .result import StepRunResult
    from .step import ParallelRunStep
