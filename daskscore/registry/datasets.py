"""Registered datasets: a dataset's definition stored by name and version.

Paths inside a registered datastore are recorded relative to it, so a registered
dataset follows its datastore (and the datastore's credential).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from ..config import check_name
from ..datasets import FileDataset, TabularDataset, dataset_from_format
from ..errors import ConfigError, WorkspaceError
from ..storage import safe_storage_options
from ._common import REGISTRY_NAME, is_url, utc_now
from ._folder import WorkspaceFolder
from .datastore import Datastore

__all__ = ["get_dataset", "register_dataset"]

def _source_of(datastores: list[Datastore], path: str) -> dict[str, str]:
    """How one dataset path is recorded: on a datastore when it is inside one."""
    text = os.fspath(path)
    if not is_url(text):
        text = os.path.abspath(os.path.expanduser(text)) + (
            "/" if text.endswith(("/", os.sep)) else "")
    matches = []
    for datastore in datastores:
        rel = datastore._relative(text)
        if rel is not None:
            matches.append((len(datastore.url), datastore.name, rel))
    if matches:  # the innermost datastore wins
        _, name, rel = max(matches)
        return {"datastore": name, "path": rel}
    return {"url": text}


def _path_of(workspace: WorkspaceFolder, source: dict[str, str],
             known: dict[str, tuple[Datastore, dict]]) -> tuple[str, dict]:
    if "url" in source:
        return source["url"], {}
    name = source["datastore"]
    if name not in known:
        datastore = Datastore.get(workspace, name)
        known[name] = (datastore, datastore.storage_options)
    datastore, options = known[name]
    return datastore._full(source["path"]), options


def _definition(workspace: WorkspaceFolder, dataset: Any) -> dict[str, Any]:
    if isinstance(dataset, FileDataset):
        kind, fmt, read_options = "file", "files", {}
    elif isinstance(dataset, TabularDataset):
        if dataset.frame is not None:
            raise WorkspaceError(
                "a dataset made from a dask DataFrame cannot be registered (it lives "
                "in memory); write it to Parquet and register "
                "Dataset.Tabular.from_parquet_files(...)"
            )
        kind, fmt, read_options = "tabular", dataset.format, dict(dataset.read_options)
    else:
        raise ConfigError("dataset", dataset,
                          "a Dataset.File / Dataset.Tabular dataset")
    paths = getattr(dataset, "given_path", dataset.path)
    many = isinstance(paths, list | tuple)
    datastores = list(workspace.datastores.values())
    sources = [_source_of(datastores, p) for p in (paths if many else [paths])]
    options = dict(getattr(dataset, "given_storage_options", None)
                   or dataset.storage_options or {})
    on_datastore = all("datastore" in s for s in sources)
    if options and not on_datastore and safe_storage_options(options) != options:
        raise WorkspaceError(
            "this dataset's storage_options hold a credential, which a workspace "
            "never stores; register the storage as a datastore "
            "(ds.Datastore.register_azure_blob_container) and build the dataset "
            "from datastore.path(...)"
        )
    return {
        "kind": kind, "format": fmt, "sources": sources, "many": many,
        "read_options": read_options,
        "storage_options": {} if on_datastore else options,
        **_partitioning(dataset),
    }


def _partitioning(dataset: Any) -> dict[str, Any]:
    """A FileDataset's partition_format, a partition_by() table's keys (only
    when set, so that earlier records compare equal)."""
    out: dict[str, Any] = {}
    if getattr(dataset, "partition_format", None):
        out["partition_format"] = dataset.partition_format
    elif isinstance(dataset, TabularDataset) and dataset.partition_keys:
        out["partition_keys"] = list(dataset.partition_keys)
    return out


def _build(workspace: WorkspaceFolder, record: dict[str, Any]) -> Any:
    known: dict[str, tuple[Datastore, dict]] = {}
    located = [_path_of(workspace, s, known) for s in record["sources"]]
    paths = [p for p, _ in located]
    options = dict(record.get("storage_options") or {})
    for _, datastore_options in located:
        options.update(datastore_options)
    path: Any = paths if record.get("many") else paths[0]
    fmt = "files" if record["kind"] == "file" else record["format"]
    dataset = dataset_from_format(fmt, path, options, record.get("read_options"))
    if record.get("partition_format"):
        dataset = FileDataset(dataset.given_path, dataset.given_storage_options or None,
                              record["partition_format"])
    if record.get("partition_keys"):
        dataset.partition_keys = list(record["partition_keys"])
    dataset.name = record["name"]
    dataset.version = record["version"]
    dataset.description = record.get("description")
    dataset.tags = dict(record.get("tags") or {})
    return dataset


def register_dataset(workspace: WorkspaceFolder, dataset: Any, name: str,
                     description: str | None = None,
                     tags: Mapping[str, str] | None = None,
                     create_new_version: bool = False) -> Any:
    """Register ``dataset`` under ``name``; returns the registered dataset.

    Paths inside a registered datastore are recorded relative to it, so the
    registered dataset follows the datastore (and its credential). Registering a
    definition identical to the latest version returns that version. A different
    definition under an existing name needs ``create_new_version=True``.

    Raises
    ------
    WorkspaceError
        The name exists with a different definition and ``create_new_version`` is
        False, or the dataset cannot be stored (in-memory, credentials).
    """
    check_name("name", name, REGISTRY_NAME)
    definition = _definition(workspace, dataset)
    found = workspace._latest("datasets", name)
    if found is not None:
        number, latest = found
        same = {k: latest.get(k) for k in definition} == definition
        if same and (description is None or description == latest.get("description")):
            return _build(workspace, latest)
        if not create_new_version:
            raise WorkspaceError(
                f"dataset {name!r} is already registered (latest version "
                f"{number}) with a different definition; pass "
                "create_new_version=True to add a version"
            )
    version = workspace._claim_version("datasets", name)
    record = {"name": name, "version": version, **definition,
              "description": description, "tags": dict(tags or {}),
              "created": utc_now()}
    workspace._write_json(record, "datasets", name, f"{version}.json")
    if workspace.local:
        shutil.rmtree(workspace._path("datasets", name, str(version)),
                      ignore_errors=True)
    return _build(workspace, record)


def get_dataset(workspace: WorkspaceFolder, name: str,
                version: int | str = "latest") -> Any:
    """The dataset registered as ``name`` (``version``: an int or ``"latest"``).

    Raises
    ------
    NotRegisteredError
        No dataset of that name, or not that version (the message lists what is
        registered).
    """
    record = workspace._version_record(
        "dataset", name, version, allowed="an int >= 1 or 'latest'",
        hint="register it with dataset.register(ws, name)",
    )
    return _build(workspace, record)
