"""The ``azureml.core`` names of v1 notebooks, on daskscore's registry.

``Workspace``, ``Datastore``, ``Dataset``, ``Experiment``, ``ScriptRunConfig``
and the accepted-and-ignored ``Environment``, ``RunConfiguration`` and
``ComputeTarget``. ``Workspace.from_config()`` reads a daskscore config
(``daskscore.json``, or a ``config.json`` with a ``"workspace"`` key) or an
Azure ML ``config.json`` (in the folder, its ``.azureml/`` subfolder or a
parent); for the latter the workspace is the folder its
``"daskscore_workspace"`` key names, by default ``.daskscore`` beside the
file (created when missing). The Azure fields are kept for printing and are
otherwise ignored.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import datasets as _datasets
from ..errors import ConfigError, WorkspaceError
from ..pipeline import pipeline as _core
from ..registry import datastore as _datastore
from ..registry import workspace as _workspace
from ..registry._common import find_config
from ..storage import list_files, resolve
from .compute import (
    AmlCompute,
    ComputeTarget,
    Environment,
    RunConfiguration,
    compute_targets,
)
from .pipeline import Pipeline, PipelineRun, PythonScriptStep, submit

__all__ = [
    "AmlCompute",
    "ComputeTarget",
    "Dataset",
    "Datastore",
    "Environment",
    "Experiment",
    "RunConfiguration",
    "ScriptRunConfig",
    "Workspace",
]

logger = logging.getLogger("daskscore.azureml")

# the names v1 gives the built-in datastores: daskscore's default one
_BUILT_IN = ("workspaceblobstore", "workspacefilestore", "workspaceworkingdirectory")
_AZURE_FIELDS = ("subscription_id", "resource_group", "workspace_name", "location")


def _azure_config(path: str | os.PathLike | None) -> tuple[str, dict] | None:
    """The first Azure ML ``config.json`` at ``path`` or above: its path and
    content."""
    return find_config(
        path,
        ("config.json", os.path.join(".azureml", "config.json")),
        lambda c: "daskscore_workspace" in c or any(k in c for k in _AZURE_FIELDS),
    )


class Workspace(_workspace.Workspace):
    """A daskscore workspace with the v1 ``Workspace`` attributes notebooks use."""

    _azure: dict[str, Any] = {}

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike | None = None,
        auth: Any = None,
        _logger: Any = None,
        _file_name: str | None = None,
    ) -> Workspace:
        """The workspace of a daskscore config or of an Azure ML ``config.json``
        (see the module's description)."""
        try:
            return super().from_config(path)
        except WorkspaceError:
            found = _azure_config(path)
            if found is None:
                raise
        candidate, config = found
        base = os.path.dirname(candidate)
        if os.path.basename(base) == ".azureml":
            base = os.path.dirname(base)
        target = os.fspath(config.get("daskscore_workspace") or ".daskscore")
        if "://" not in target:
            target = os.path.join(base, os.path.expanduser(target))
        workspace = cls(target)
        workspace._azure = {k: config.get(k) for k in _AZURE_FIELDS}
        logger.info(
            "Workspace.from_config(): %s is an Azure ML config; using the "
            "daskscore workspace %s",
            candidate,
            workspace.url,
        )
        return workspace

    @classmethod
    def get(cls, name: str, *_: Any, **__: Any) -> Workspace:
        """The workspace of ``Workspace.from_config()`` (v1 looks it up in Azure)."""
        return cls.from_config()

    @property
    def name(self) -> str:
        """The Azure config's ``workspace_name``, else the folder's name."""
        return self._azure.get("workspace_name") or super().name

    @property
    def subscription_id(self) -> str | None:
        return self._azure.get("subscription_id")

    @property
    def resource_group(self) -> str | None:
        return self._azure.get("resource_group")

    @property
    def location(self) -> str | None:
        return self._azure.get("location")

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        """Every name is the current Dask cluster."""
        return compute_targets(self)

    @property
    def datastores(self) -> dict[str, _datastore.Datastore]:
        found = dict(super().datastores)
        default = self.get_default_datastore()
        for name in _BUILT_IN:
            found.setdefault(name, default)
        return found


class Datastore(_datastore.Datastore):
    """v1's ``Datastore``: ``Datastore.get(ws, name)`` or ``Datastore(ws, name)``;
    ``workspaceblobstore`` is the workspace's default datastore."""

    def __new__(cls, workspace: Any, name: Any = None, *args: Any, **kwargs: Any):
        if isinstance(name, Mapping):
            return super().__new__(cls)
        if name is None:
            return workspace.get_default_datastore()
        return cls.get(workspace, name)

    @classmethod
    def get(cls, workspace: Any, datastore_name: str) -> _datastore.Datastore:
        if datastore_name in _BUILT_IN:
            if workspace._read_json("datastores", f"{datastore_name}.json") is None:
                return workspace.get_default_datastore()
        return _datastore.Datastore.get(workspace, datastore_name)


# v1 parameters that daskscore has no use for (its inputs are always checked
# when a step plans them)
_DROPPED = ("validate", "include_path", "is_file", "infer_column_types")


def _path(
    path: Any, storage_options: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any] | None]:
    """v1 paths: ``(datastore, "mnist/")`` pairs as ``DataPath``s; a list of one as
    that one; a longer list of folders or globs as the files they hold (daskscore
    takes a list as files). Also the storage options the files are listed and
    read with (given, else the datastore's)."""
    if isinstance(path, tuple) and len(path) == 2 and hasattr(path[0], "path"):
        return path[0].path(path[1]), storage_options
    if not isinstance(path, list | tuple):
        return path, storage_options
    items = [_path(p)[0] for p in path]
    if len(items) == 1:
        return items[0], storage_options
    files: list[Any] = []
    for item in items:
        options = storage_options or getattr(item, "storage_options", None) or None
        # the options that reach the listed files (endpoint and account included)
        url, options = resolve(os.fspath(item), options)
        files.extend(list_files(url, options))
        storage_options = storage_options or options
    return files, storage_options


def _call(factory: Any, path: Any, options: dict[str, Any]) -> Any:
    """``factory(path, **options)`` with the v1-only options left out; an option
    daskscore does not provide is a one-line ConfigError."""
    accepted = set(inspect.signature(factory).parameters)
    given = {}
    for key, value in options.items():
        if key in accepted:
            given[key] = value
        elif key not in _DROPPED and value not in (None, False):
            raise ConfigError(
                key,
                value,
                f"not given: daskscore's "
                f"{factory.__qualname__}() does not provide {key} "
                "(see docs/migrating-from-azureml.md)",
            )
    path, storage_options = _path(path, given.get("storage_options"))
    if storage_options and "storage_options" in accepted:
        given["storage_options"] = storage_options
    return factory(path, **given)


class _File:
    """``Dataset.File``."""

    @staticmethod
    def from_files(
        path: Any,
        validate: bool = True,
        partition_format: str | None = None,
        is_file: bool = False,
        **options: Any,
    ) -> _datasets.FileDataset:
        return _call(
            _datasets.Dataset.File.from_files,
            path,
            {"partition_format": partition_format, **options},
        )


class _Tabular:
    """``Dataset.Tabular``."""

    @staticmethod
    def from_delimited_files(path: Any, **options: Any) -> _datasets.TabularDataset:
        return _call(_datasets.Dataset.Tabular.from_delimited_files, path, options)

    @staticmethod
    def from_parquet_files(path: Any, **options: Any) -> _datasets.TabularDataset:
        return _call(_datasets.Dataset.Tabular.from_parquet_files, path, options)

    @staticmethod
    def from_json_lines_files(path: Any, **options: Any) -> _datasets.TabularDataset:
        return _call(_datasets.Dataset.Tabular.from_json_lines_files, path, options)


class Dataset(_datasets.Dataset):
    """v1's ``Dataset``: ``File``/``Tabular`` take ``(datastore, path)`` pairs."""

    File = _File
    Tabular = _Tabular


class ScriptRunConfig:
    """A script to run as a process: ``Experiment.submit(ScriptRunConfig(...))`` is a
    one-step pipeline (``PythonScriptStep``)."""

    def __init__(
        self,
        source_directory: str | None = None,
        script: str | None = None,
        arguments: Sequence[Any] | None = None,
        run_config: Any = None,
        compute_target: Any = None,
        environment: Any = None,
        **_: Any,
    ) -> None:
        if not script:
            raise ConfigError("script", script, "the script to run")
        self.source_directory = source_directory
        self.script = script
        self.arguments = list(arguments or [])
        self.run_config = run_config
        self.compute_target = compute_target
        self.environment = environment


class Experiment(_core.Experiment):
    """v1's ``Experiment``: ``submit(pipeline, pipeline_parameters={...})`` runs on
    the current Dask cluster (the ``distributed.Client`` made, else an embedded
    one per step)."""

    def submit(
        self, config: Any, tags: Mapping[str, str] | None = None, **kwargs: Any
    ) -> PipelineRun:
        if isinstance(config, ScriptRunConfig):
            step = PythonScriptStep(
                config.script,
                arguments=config.arguments,
                source_directory=config.source_directory,
                compute_target=config.compute_target,
            )
            config = Pipeline(self.workspace, [step])
        return submit(self, config, tags, **kwargs)
