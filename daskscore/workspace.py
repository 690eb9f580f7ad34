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
    <workspace>/experiments/<name>/runs/<id>.json run history (see pipeline.py)

This module holds the workspace and the dataset registry; datastores (and how
their credentials are kept by reference, never in the workspace) are in
datastore.py, models in model.py.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

from ._registry import check_name, is_url, join, utc_now
from .datastore import DEFAULT_DATASTORE, DataPath, Datastore  # noqa: F401 - re-exported
from .exceptions import ConfigError, NotRegisteredError, WorkspaceError
from .storage import is_local, safe_storage_options, url_to_fs

__all__ = [
    "DataPath",
    "Datastore",
    "Workspace",
    "get_dataset",
    "register_dataset",
]

DEFAULT_WORKSPACE = ".daskscore"
CONFIG_FILE_NAMES = ("daskscore.json", "config.json")
_FORMAT = 1


# -- the workspace ---------------------------------------------------------------


class Workspace:
    """A folder (or fsspec URL) holding the datastore, dataset and model registries.

    Parameters
    ----------
    path_or_url
        Local folder or URL (``abfs://container/ws``, ``memory://ws``, ...);
        default ``./.daskscore``.
    storage_options
        fsspec options for a remote workspace. Credentials here are used, never
        written anywhere.
    create
        Create the workspace when it does not exist (else raise
        :class:`~daskscore.WorkspaceError`).

    Examples
    --------
    >>> ws = Workspace("team-workspace")               # doctest: +SKIP
    >>> ws.write_config()                              # doctest: +SKIP
    >>> ws = Workspace.from_config()                   # doctest: +SKIP
    """

    def __init__(
        self,
        path_or_url: str | os.PathLike | None = None,
        storage_options: dict[str, Any] | None = None,
        create: bool = True,
    ) -> None:
        url = os.fspath(path_or_url) if path_or_url is not None else DEFAULT_WORKSPACE
        if not is_url(url):
            url = os.path.abspath(os.path.expanduser(url))
        self.url = url.rstrip("/") or url
        self.storage_options = dict(storage_options or {})
        try:
            self._fs, self._root = url_to_fs(self.url, self.storage_options)
        except (ValueError, ImportError) as exc:
            raise WorkspaceError(f"workspace {self.url}: {exc}") from exc
        meta = self._read_json("workspace.json")
        if meta is None:
            if not create:
                raise WorkspaceError(
                    f"no workspace at {self.url}; create it with "
                    f"ds.Workspace({self.url!r})"
                )
            meta = {"format": _FORMAT, "id": uuid.uuid4().hex, "created": utc_now(),
                    "default_datastore": DEFAULT_DATASTORE}
            self._write_json(meta, "workspace.json")
        self._meta = meta
        self.id: str = meta["id"]

    # -- identity ------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The workspace folder's name."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def local(self) -> bool:
        """Whether the workspace is on the local disk."""
        return is_local(self._fs)

    def __repr__(self) -> str:
        return f"Workspace({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    # -- config files ----------------------------------------------------------------
    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None) -> Workspace:
        """The workspace named by ``daskscore.json`` (or ``config.json``).

        Looks in ``path`` (a config file or a folder; default the current folder)
        and then in each parent folder. The file holds ``{"workspace": PATH_OR_URL}``
        (a relative path is relative to the file) and optionally
        ``"storage_options"``; a ``config.json`` without a ``"workspace"`` key is
        somebody else's and is skipped.

        Raises
        ------
        WorkspaceError
            No config file was found, or the workspace it names does not exist.
        """
        start = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
        if os.path.isfile(start):
            candidates = [start]
        else:
            candidates = []
            folder = start
            while True:
                candidates.extend(os.path.join(folder, n) for n in CONFIG_FILE_NAMES)
                parent = os.path.dirname(folder)
                if parent == folder:
                    break
                folder = parent
        for candidate in candidates:
            if not os.path.isfile(candidate):
                continue
            try:
                with open(candidate, encoding="utf-8") as f:
                    config = json.load(f)
            except (OSError, ValueError) as exc:
                raise WorkspaceError(f"cannot read workspace config {candidate}: {exc}"
                                     ) from exc
            if not isinstance(config, dict) or "workspace" not in config:
                continue
            target = os.fspath(config["workspace"])
            if not is_url(target):
                target = os.path.join(os.path.dirname(candidate),
                                      os.path.expanduser(target))
            try:
                return cls(target, config.get("storage_options"), create=False)
            except WorkspaceError as exc:
                raise WorkspaceError(f"{exc} (named by {candidate})") from None
        raise WorkspaceError(
            f"no {' or '.join(CONFIG_FILE_NAMES)} with a \"workspace\" key in {start} "
            "or its parents; create a workspace and its config with "
            "ds.Workspace('.daskscore').write_config()"
        )

    def write_config(self, path: str | os.PathLike | None = None,
                     file_name: str = "daskscore.json") -> str:
        """Write the config file that :meth:`from_config` finds; returns its path.

        Only non-secret storage options are written (credentials come from the
        environment where the config is read).
        """
        folder = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
        os.makedirs(folder, exist_ok=True)
        target = self.url
        if self.local:
            rel = os.path.relpath(self.url, folder)
            target = rel if not rel.startswith("..") else self.url
        config: dict[str, Any] = {"workspace": target}
        options = {k: v for k, v in safe_storage_options(self.storage_options).items()
                   if v == self.storage_options.get(k)}
        if options:
            config["storage_options"] = options
        out = os.path.join(folder, file_name)
        with open(out, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        return out

    # -- files inside the workspace ---------------------------------------------------
    def _path(self, *names: str) -> str:
        return join(self._root, *names)

    def _url(self, *names: str) -> str:
        """A path or URL inside the workspace, usable with ``storage_options``."""
        if self.local:
            return os.path.join(self.url, *names)
        return join(self.url, *names)

    def _read_json(self, *names: str) -> Any:
        path = self._path(*names)
        try:
            with self._fs.open(path, "rb") as f:
                return json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise WorkspaceError(
                f"{self._url(*names)} is not valid JSON ({exc}); fix or delete it"
            ) from exc

    def _write_json(self, data: Any, *names: str) -> None:
        from .sinks import write_atomic

        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        path = self._path(*names)
        if not self.local:
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        write_atomic(self._fs, path, text.encode("utf-8"))

    def _delete(self, *names: str, recursive: bool = False) -> None:
        path = self._path(*names)
        if self._fs.exists(path):
            self._fs.rm(path, recursive=recursive)

    def _list_names(self, *names: str, suffix: str = "") -> list[str]:
        """Base names of the entries of a folder (ending in ``suffix``), sorted."""
        path = self._path(*names)
        try:
            entries = self._fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            base = entry.rstrip("/").rsplit("/", 1)[-1]
            if base.startswith(".") or not base.endswith(suffix):
                continue
            out.append(base[: len(base) - len(suffix)] if suffix else base)
        return sorted(out)

    def _versions(self, *names: str) -> list[int]:
        """The versions registered in a folder: the numbers of its ``<n>.json``."""
        return sorted(int(n) for n in self._list_names(*names, suffix=".json")
                      if n.isdigit())

    def _claim_version(self, *names: str) -> int:
        """The next free version number, reserved by creating its folder.

        On a local workspace the folder is created with ``os.mkdir`` (atomic), so
        two processes registering at once get different versions. A version is
        visible only once its ``<n>.json`` is written.
        """
        taken = set(self._versions(*names)) | {
            int(n) for n in self._list_names(*names) if n.isdigit()
        }
        version = max(taken, default=0) + 1
        while True:
            folder = self._path(*names, str(version))
            if self.local:
                os.makedirs(self._path(*names), exist_ok=True)
                try:
                    os.mkdir(folder)
                    return version
                except FileExistsError:
                    version += 1
                    continue
            self._fs.makedirs(folder, exist_ok=True)
            return version

    # -- registries --------------------------------------------------------------------
    @property
    def datastores(self) -> dict[str, Datastore]:
        """The registered datastores by name (the default one included)."""
        names = self._list_names("datastores", suffix=".json")
        out = {DEFAULT_DATASTORE: Datastore._default(self)}
        for name in names:
            out[name] = Datastore.get(self, name)
        return dict(sorted(out.items()))

    def get_default_datastore(self) -> Datastore:
        """The datastore outputs go to unless told otherwise."""
        name = (self._read_json("workspace.json") or self._meta).get(
            "default_datastore", DEFAULT_DATASTORE)
        return Datastore.get(self, name)

    def set_default_datastore(self, name: str) -> None:
        """Make the datastore ``name`` the default one."""
        Datastore.get(self, name)
        meta = dict(self._read_json("workspace.json") or self._meta)
        meta["default_datastore"] = name
        self._write_json(meta, "workspace.json")
        self._meta = meta

    @property
    def datasets(self) -> dict[str, Any]:
        """The registered datasets by name, each at its latest version."""
        return {name: get_dataset(self, name)
                for name in self._list_names("datasets")
                if self._versions("datasets", name)}

    def dataset_versions(self, name: str) -> list[int]:
        """The registered versions of the dataset ``name``, oldest first."""
        return self._versions("datasets", name)

    @property
    def models(self) -> dict[str, Any]:
        """The registered models by name, each at its latest version."""
        from .model import Model

        return {m.name: m for m in Model.list(self, latest=True)}

    @property
    def experiments(self) -> dict[str, Any]:
        """The experiments with runs in this workspace, by name."""
        from .pipeline import Experiment

        return {name: Experiment(self, name)
                for name in self._list_names("experiments")}


# -- the dataset registry ------------------------------------------------------------


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


def _path_of(workspace: Workspace, source: dict[str, str],
             known: dict[str, tuple[Datastore, dict]]) -> tuple[str, dict]:
    if "url" in source:
        return source["url"], {}
    name = source["datastore"]
    if name not in known:
        datastore = Datastore.get(workspace, name)
        known[name] = (datastore, datastore.storage_options)
    datastore, options = known[name]
    return datastore._full(source["path"]), options


def _definition(workspace: Workspace, dataset: Any) -> dict[str, Any]:
    from .datasets import FileDataset, TabularDataset

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
    }


def _build(workspace: Workspace, record: dict[str, Any]) -> Any:
    from .datasets import Dataset

    known: dict[str, tuple[Datastore, dict]] = {}
    located = [_path_of(workspace, s, known) for s in record["sources"]]
    paths = [p for p, _ in located]
    options = dict(record.get("storage_options") or {})
    for _, datastore_options in located:
        options.update(datastore_options)
    path: Any = paths if record.get("many") else paths[0]
    fmt, read = record["format"], record.get("read_options") or {}
    if record["kind"] == "file":
        dataset = Dataset.File.from_files(path, storage_options=options)
    elif fmt == "csv":
        dataset = Dataset.Tabular.from_delimited_files(
            path, separator=read.get("separator", ","), header=read.get("header", True),
            storage_options=options,
            support_multi_line=read.get("support_multi_line", False))
    elif fmt == "parquet":
        dataset = Dataset.Tabular.from_parquet_files(path, storage_options=options)
    else:
        dataset = Dataset.Tabular.from_json_lines_files(path, storage_options=options)
    dataset.name = record["name"]
    dataset.version = record["version"]
    dataset.description = record.get("description")
    dataset.tags = dict(record.get("tags") or {})
    return dataset


def register_dataset(workspace: Workspace, dataset: Any, name: str,
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
    check_name("name", name)
    definition = _definition(workspace, dataset)
    versions = workspace._versions("datasets", name)
    if versions:
        latest = workspace._read_json("datasets", name, f"{versions[-1]}.json")
        same = {k: latest.get(k) for k in definition} == definition
        if same and (description is None or description == latest.get("description")):
            return _build(workspace, latest)
        if not create_new_version:
            raise WorkspaceError(
                f"dataset {name!r} is already registered (latest version "
                f"{versions[-1]}) with a different definition; pass "
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


def get_dataset(workspace: Workspace, name: str, version: int | str = "latest") -> Any:
    """The dataset registered as ``name`` (``version``: an int or ``"latest"``).

    Raises
    ------
    NotRegisteredError
        No dataset of that name, or not that version (the message lists what is
        registered).
    """
    versions = workspace._versions("datasets", name) if isinstance(name, str) else []
    if not versions:
        raise NotRegisteredError(
            "dataset", name, known=sorted(workspace.datasets), workspace=workspace.url,
            hint="register it with dataset.register(ws, name)",
        )
    if version in ("latest", None):
        number = versions[-1]
    else:
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise ConfigError("version", version, "an int >= 1 or 'latest'") from None
    if number not in versions:
        raise NotRegisteredError("dataset", name, version=number, known=versions,
                                 workspace=workspace.url)
    return _build(workspace, workspace._read_json("datasets", name, f"{number}.json"))


