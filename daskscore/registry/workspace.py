"""Workspaces: a folder of plain JSON registries for datastores, datasets and models.

A workspace is a folder (``./.daskscore`` by default) or any fsspec URL, so a team
can share one on blob storage. Everything in it is a human-readable file::

    <workspace>/workspace.json                    id, format, default datastore
    <workspace>/datastores/<name>.json            where a datastore points, and how
                                                  its credential is found (never
                                                  the credential itself)
    <workspace>/data/                             the default datastore's files
    <workspace>/datasets/<name>/<version>.json    a registered dataset's definition
    <workspace>/models/<name>/<version>.json      a registered model's metadata
    <workspace>/models/<name>/<version>/...       the model's stored copy
    <workspace>/experiments/<name>/runs/<id>.json run history (daskscore.pipeline)

This module holds the public :class:`Workspace`: the folder (``_folder.py``) with
its registries on top; datastores (and how their credentials are kept by
reference, never in the workspace) are in ``datastore.py``, models in
``model.py``, registered datasets in ``datasets.py``, run history in
``daskscore.pipeline``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..pipeline.pipeline import Experiment
from . import datasets as _datasets
from ._folder import DEFAULT_WORKSPACE, WorkspaceFolder
from .datastore import DataPath, Datastore
from .model import Model

__all__ = ["DEFAULT_WORKSPACE", "DataPath", "Datastore", "Workspace"]


class Workspace(WorkspaceFolder):
    __doc__ = WorkspaceFolder.__doc__

    @property
    def datasets(self) -> dict[str, Any]:
        """The registered datasets by name, each at its latest version."""
        return {name: _datasets.get_dataset(self, name)
                for name in self._registered("datasets")}

    def dataset_versions(self, name: str) -> list[int]:
        """The registered versions of the dataset ``name``, oldest first."""
        return self._versions("datasets", name)

    @property
    def models(self) -> dict[str, Any]:
        """The registered models by name, each at its latest version."""
        return {m.name: m for m in Model.list(self, latest=True)}

    @property
    def experiments(self) -> dict[str, Any]:
        """The experiments with runs in this workspace, by name."""
        return {name: Experiment(self, name)
                for name in self._list_names("experiments")}

    def register_dataset(
        self,
        dataset: Any,
        name: str,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        create_new_version: bool = False,
    ) -> Any:
        """Register ``dataset`` under ``name``.

        See :func:`.datasets.register_dataset`.
        """
        return _datasets.register_dataset(
            self, dataset, name, description=description, tags=tags,
            create_new_version=create_new_version,
        )

    def get_dataset(self, name: str, version: int | str = "latest") -> Any:
        """The dataset registered as ``name``; see :func:`.datasets.get_dataset`."""
        return _datasets.get_dataset(self, name, version)
