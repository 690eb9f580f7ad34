"""daskscore: dataframe-native batch scoring on Dask.

Write an entry script with ``init()`` and ``run(mini_batch)``, describe the inputs
as datasets, and run a :class:`ParallelRunStep` on an embedded LocalCluster or any
Dask cluster. See the README for the semantics.
"""

from .config import OutputAction, ParallelRunConfig
from .datasets import Dataset, FileDataset, MiniBatchSpec, TabularDataset
from .entry_script import EntryScript, MiniBatchContext
from .exceptions import (
    ConfigError,
    DaskScoreError,
    DatasetError,
    EntryScriptError,
    ErrorThresholdExceeded,
    JobError,
)
from .progress import JobProgress, ProgressCallback, TextProgress
from .result import StepRunResult
from .step import ParallelRunStep

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DaskScoreError",
    "Dataset",
    "DatasetError",
    "EntryScript",
    "EntryScriptError",
    "ErrorThresholdExceeded",
    "FileDataset",
    "JobError",
    "JobProgress",
    "MiniBatchContext",
    "MiniBatchSpec",
    "OutputAction",
    "ParallelRunConfig",
    "ParallelRunStep",
    "ProgressCallback",
    "StepRunResult",
    "TabularDataset",
    "TextProgress",
    "__version__",
]
