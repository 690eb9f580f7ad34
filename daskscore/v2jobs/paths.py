"""Where a v2 path points: what daskscore reads and writes for it.

- a local path, relative to the YAML file that names it (``file:`` prefix allowed);
- ``azureml://datastores/<name>/paths/<path>`` (also the long
  ``azureml://subscriptions/.../datastores/<name>/paths/...`` form), through the
  datastores of a daskscore workspace; ``workspaceblobstore`` is the workspace's
  default datastore unless one of that name is registered;
- ``azureml:<dataset name>:<version>`` (or ``@latest``) for a registered dataset;
- ``abfs://``, ``az://``, ``abfss://`` and ``https://<account>.blob.core.windows.net/``
  URLs, read through daskscore's storage layer (credentials from the environment).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..registry.workspace import Workspace

__all__ = ["DEFAULT_DATASTORE_NAME", "Location", "PathResolver"]

DEFAULT_DATASTORE_NAME = "workspaceblobstore"
_DATASTORE_URI = re.compile(r"^azureml://(?:.*/)?datastores/([^/]+)/paths/?(.*)$")
_DATASET_URI = re.compile(r"^azureml:(?!//)([A-Za-z0-9_.-]+)(?::([0-9]+)|@(latest))?$")
_REMOTE = ("abfs://", "abfss://", "az://", "https://", "http://", "s3://", "gs://",
           "memory://")


@dataclass
class Location:
    """A resolved path: a local path or URL, its storage options, and the
    registered dataset it names (``azureml:name:version``), if any."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None

    @property
    def is_local(self) -> bool:
        return "://" not in self.url


class PathResolver:
    """Turns v2 paths into :class:`Location` objects; opens the workspace when a
    path needs it (``--workspace``, default ``./.daskscore``, created if missing)."""

    def __init__(self, workspace_dir: str | None = None) -> None:
        self.workspace_dir = workspace_dir or ".daskscore"
        self._workspace: Workspace | None = None

    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace(self.workspace_dir, create=True)
        return self._workspace

    def resolve(self, path: str, base_dir: str, where: str,
                must_exist: bool = False) -> Location:
        """The :class:`Location` of ``path`` written at ``where`` (for errors)."""
        text = str(path).strip()
        match = _DATASTORE_URI.match(text)
        if match:
            return self._datastore_path(match.group(1), match.group(2), where)
        if text.startswith("azureml:") and not text.startswith("azureml://"):
            return self._dataset(text, where)
        if text.startswith("azureml://"):
            raise UsageError(f"{where}: {text}: daskscore resolves azureml:// paths of "
                             "the form azureml://datastores/<name>/paths/<path>")
        if text.startswith(_REMOTE):
            return Location(text)
        local = os.path.normpath(os.path.join(base_dir,
                                              os.path.expanduser(text.removeprefix("file:"))))
        if must_exist and not os.path.exists(local):
            raise UsageError(f"{where}: {text}: no such file or folder ({local}); "
                             "local paths are relative to the YAML file")
        return Location(local)

    def _datastore_path(self, name: str, rel: str, where: str) -> Location:
        ws = self.workspace()
        datastore = self._datastore(ws, name, where)
        data_path = datastore.path(rel.strip("/"))
        return Location(data_path.url, dict(data_path.storage_options or {}))

    @staticmethod
    def _datastore(ws: Workspace, name: str, where: str) -> Any:
        registered = ws.datastores
        if name in registered:
            return registered[name]
        if name == DEFAULT_DATASTORE_NAME:
            return ws.get_default_datastore()
        raise UsageError(
            f"{where}: datastore {name!r} is not registered in the workspace "
            f"{ws.url} (registered: {', '.join(sorted(registered))}); register it "
            "with ds.Datastore.register_local(ws, name, path) or give --workspace")

    def _dataset(self, text: str, where: str) -> Location:
        match = _DATASET_URI.match(text)
        if not match:
            raise UsageError(f"{where}: {text}: write a registered dataset as "
                             "azureml:<name>:<version> or azureml:<name>@latest")
        name, version = match.group(1), match.group(2) or "latest"
        try:
            dataset = self.workspace().get_dataset(name, version)
        except LookupError as exc:
            raise UsageError(f"{where}: {text}: {exc}") from None
        url = dataset.path if isinstance(dataset.path, str) else str(dataset.path)
        return Location(url, dict(getattr(dataset, "storage_options", {}) or {}),
                        dataset)
