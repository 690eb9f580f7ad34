"""daskscore: dataframe-native batch scoring on Dask.

Write an entry script with ``init()`` and ``run(mini_batch)``, describe the inputs
as datasets, and run a :class:`ParallelRunStep` on an embedded LocalCluster or any
Dask cluster. See the README for the semantics.
"""

from .config import OutputAction, ParallelRunConfig
from .datasets import Dataset, FileDataset, MiniBatchSpec, TabularDataset
from .datastore import DataPath, Datastore
from .entry_script import EntryScript, MiniBatchContext
from .exceptions import (
    ConfigError,
    DaskScoreError,
    DatasetError,
    EntryScriptError,
    ErrorThresholdExceeded,
    JobError,
    NotRegisteredError,
    WorkspaceError,
)
from .model import Model
from .pipeline import Experiment, Pipeline, PipelineData, PipelineRun, StepRun
from .progress import JobProgress, ProgressCallback, TextProgress
from .result import StepRunResult
from .step import ParallelRunStep
from .workspace import Workspace

__version__ = "0.1.0"

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
]
