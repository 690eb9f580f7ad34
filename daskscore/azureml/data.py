"""Azure ML v1 data names: ``azureml.data`` and its submodules.

``OutputFileDatasetConfig`` is a step output folder (as ``PipelineData``, with an
optional ``destination=(datastore, path)``), ``DatasetConsumptionConfig`` and
``DataReference`` are step inputs; ``FileDataset``/``TabularDataset``/
``DataPath`` are daskscore's own.
"""

from __future__ import annotations

from typing import Any

from ..datasets import FileDataset, TabularDataset
from ..registry.datastore import DataPath, Datastore

__all__ = [
    "DataPath",
    "DataReference",
    "DataType",
    "DatasetConsumptionConfig",
    "FileDataset",
    "OutputFileDatasetConfig",
    "TabularDataset",
]


class OutputFileDatasetConfig:
    """A step's output folder: ``destination=(datastore, "path/{run-id}")`` or, by
    default, ``azureml/<step run id>/<name>`` on the default datastore.
    ``{run-id}`` and ``{output-name}`` in the path are filled in per run."""

    def __init__(
        self,
        name: str | None = None,
        destination: Any = None,
        source: str | None = None,
        partition_format: str | None = None,
    ) -> None:
        self.name = name or "output"
        self.datastore: Datastore | None = None
        self._template: str | None = None
        if destination is not None:
            self.datastore, self._template = destination
        self.source = source
        self._producer: Any = None
        self._read: tuple[str, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"OutputFileDatasetConfig(name={self.name!r})"

    def _output_folder(self, step_id: str) -> str:
        if self._template is None:
            return f"azureml/{step_id}/{self.name}"
        return (
            self._template.replace("{run-id}", step_id)
            .replace("{output-name}", self.name)
            .strip("/")
        )

    # what notebooks chain on it: all keep the same folder
    def as_upload(
        self, overwrite: bool = False, source_globs: Any = None
    ) -> OutputFileDatasetConfig:
        return self

    def as_mount(self, disable_metadata_cache: bool = False) -> OutputFileDatasetConfig:
        return self

    def as_input(self, name: str | None = None) -> OutputFileDatasetConfig:
        return self

    def register_on_complete(
        self, name: str, description: str | None = None, tags: Any = None
    ) -> OutputFileDatasetConfig:
        return self

    def read_delimited_files(self, **_: Any) -> OutputFileDatasetConfig:
        return self

    def read_parquet_files(self, **_: Any) -> OutputFileDatasetConfig:
        return self


class DatasetConsumptionConfig:
    """A step input: a dataset, a ``DataPath`` or a ``PipelineParameter`` of one,
    under ``name``."""

    def __init__(
        self,
        name: str,
        dataset: Any,
        mode: str = "direct",
        path_on_compute: str | None = None,
    ) -> None:
        self.name = name
        self.dataset = dataset
        self.mode = mode
        self.path_on_compute = path_on_compute

    def as_mount(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        return self

    def as_download(
        self, path_on_compute: str | None = None
    ) -> DatasetConsumptionConfig:
        return self

    def _v1_value(self, submission: Any) -> Any:
        value = submission.value(self.dataset)
        if isinstance(value, DataPath):
            value = FileDataset(value.url, value.storage_options or None)
        if isinstance(value, FileDataset | TabularDataset):
            return value.as_named_input(self.name)
        return value


class DataReference:
    """v1's ``DataReference(datastore, data_reference_name, path_on_datastore)``:
    a folder of a datastore, read as a FileDataset."""

    def __init__(
        self,
        datastore: Datastore,
        data_reference_name: str | None = None,
        path_on_datastore: str | None = None,
        mode: str = "mount",
        **_: Any,
    ) -> None:
        self.datastore = datastore
        self.data_reference_name = data_reference_name
        self.path_on_datastore = path_on_datastore or ""

    def _v1_value(self, submission: Any) -> Any:
        path = self.datastore.path(self.path_on_datastore)
        dataset = FileDataset(path.url, path.storage_options or None)
        return dataset.as_named_input(self.data_reference_name or "input")


class DataType:
    """Column types for ``set_column_types`` (names of the types, as strings)."""

    @staticmethod
    def to_datetime(formats: Any = None) -> str:
        return "datetime"

    @staticmethod
    def to_float(decimal_mark: str = ".") -> str:
        return "float"

    @staticmethod
    def to_long() -> str:
        return "int"

    @staticmethod
    def to_string() -> str:
        return "string"

    @staticmethod
    def to_bool() -> str:
        return "bool"
