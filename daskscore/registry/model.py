"""Registered models: versioned copies of a model file or folder in a workspace.

``Model.register`` copies a file or folder into ``<workspace>/models/<name>/<n>/``
and writes ``<workspace>/models/<name>/<n>.json`` (name, version, tags,
description, content hash). ``ParallelRunStep(models=[model])`` hands each
model's ``name``, ``version`` and ``path`` to every runner process (the
``DASKSCORE_MODELS`` environment variable; the credentials of a remote workspace
come with the runner's setup, never in the environment), where
``Model.get_model_path(name)`` inside ``init()`` returns a local path: the stored
copy itself for a local workspace, or a copy downloaded once per machine into a
cache folder for a remote one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

from .. import _settings
from ..config import check_name
from ..entry_script import STEP_MODEL_OPTIONS
from ..errors import NotRegisteredError, WorkspaceError
from ..storage import url_to_fs
from ._common import REGISTRY_NAME, utc_now
from ._folder import WorkspaceFolder as Workspace

__all__ = ["Model"]

MODELS_ENV = "DASKSCORE_MODELS"
# the variable that sets daskscore.model-cache (was DASKSCORE_MODEL_CACHE)
CACHE_ENV = _settings.env_name("model-cache")
# remote path -> local copy, for this process
_LOCAL_COPIES: dict[str, str] = {}


def _content_hash(path: str) -> str:
    """sha256 over the relative names and bytes of a file or a folder's files."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        files = [(os.path.basename(path), path)]
    else:
        files = []
        for folder, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(folder, name)
                files.append((os.path.relpath(full, path).replace(os.sep, "/"), full))
    for rel, full in files:
        digest.update(rel.encode() + b"\0")
        with open(full, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


class Model:
    """A registered model: ``Model(ws, "mnist")`` (latest) or ``Model(ws, "mnist", 2)``.

    Attributes
    ----------
    name, version
        The name and the version (an int counting from 1).
    id
        ``"<name>:<version>"``.
    path
        Local path or URL of the stored copy: the folder (named like the
        registered folder) or the file.
    storage_options
        fsspec options to read ``path`` (those of the workspace).
    description, tags, properties, created_time, sha256
        As recorded at registration.

    Raises
    ------
    NotRegisteredError
        No model of that name or version.
    """

    def __init__(self, workspace: Workspace, name: str,
                 version: int | str | None = None) -> None:
        record = workspace._version_record(
            "model", name, version, allowed="an int >= 1 or None",
            hint="register it with ds.Model.register(ws, model_path, model_name)",
        )
        self._init(workspace, record)

    def _init(self, workspace: Workspace, record: dict[str, Any]) -> None:
        self.workspace = workspace
        self.name: str = record["name"]
        self.version: int = int(record["version"])
        self.description: str | None = record.get("description")
        self.tags: dict[str, str] = dict(record.get("tags") or {})
        self.properties: dict[str, str] = dict(record.get("properties") or {})
        self.created_time: str = record.get("created", "")
        self.sha256: str = record.get("sha256", "")
        self.file_name: str = record["file_name"]
        self.path: str = workspace._url("models", self.name, str(self.version),
                                        self.file_name)
        self.storage_options: dict[str, Any] = dict(workspace.storage_options)

    @classmethod
    def _from_record(cls, workspace: Workspace, record: dict[str, Any]) -> Model:
        model = object.__new__(cls)
        model._init(workspace, record)
        return model

    def _record(self) -> dict[str, Any]:
        """The version's record as stored (``<name>/<version>.json``)."""
        return self.workspace._read_json("models", self.name, f"{self.version}.json")

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, version={self.version}, path={self.path!r})"

    # -- registry ----------------------------------------------------------------------
    @classmethod
    def register(
        cls,
        workspace: Workspace,
        model_path: str | os.PathLike,
        model_name: str,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> Model:
        """Store a copy of a model file or folder as the next version of ``model_name``.

        Registering the same content (same files, bytes, tags and description) as
        the latest version returns that version instead of adding one, so a script
        that registers on every run keeps one version per actual model.

        Parameters
        ----------
        workspace
            Where to register.
        model_path
            A local file or folder (e.g. a TensorFlow SavedModel folder).
        model_name
            The name; ``Model.get_model_path(model_name)`` finds it.
        tags, properties, description
            Free-form metadata kept with the version.
        """
        check_name("model_name", model_name, REGISTRY_NAME)
        source = os.path.abspath(os.path.expanduser(os.fspath(model_path)))
        if not os.path.exists(source):
            raise WorkspaceError(f"model_path {source} does not exist; give the model "
                                 "file or folder to register")
        file_name = os.path.basename(source.rstrip(os.sep)) or "model"
        sha = _content_hash(source)
        tags, properties = dict(tags or {}), dict(properties or {})
        found = workspace._latest("models", model_name)
        if found is not None:
            _, latest = found
            if (latest.get("sha256"), latest.get("file_name"), latest.get("tags"),
                    latest.get("properties"), latest.get("description")) == (
                    sha, file_name, tags, properties, description):
                return cls._from_record(workspace, latest)
        version = workspace._claim_version("models", model_name)
        _store_copy(workspace, source, model_name, version, file_name)
        record = {
            "name": model_name, "version": version, "file_name": file_name,
            "is_folder": os.path.isdir(source), "sha256": sha, "tags": tags,
            "properties": properties, "description": description,
            "registered_from": source, "created": utc_now(),
        }
        workspace._write_json(record, "models", model_name, f"{version}.json")
        return cls._from_record(workspace, record)

    @staticmethod
    def list(workspace: Workspace, name: str | None = None, latest: bool = False,
             tags: Any = None, properties: Any = None) -> list[Model]:
        """The registered models (every version, or only the latest of each name).

        ``tags`` and ``properties`` keep the versions that have them: a list of
        keys and ``[key, value]`` pairs (``["stage", ["store", "1001"]]``) or a
        dict of values. With ``latest``, the latest version of each name among
        those kept.
        """
        names = [name] if name is not None else workspace._list_names("models")
        wanted_tags, wanted_props = _wanted(tags, "tags"), _wanted(properties,
                                                                   "properties")
        out = []
        for model_name in names:
            kept = []
            for version in workspace._versions("models", model_name):
                record = workspace._read_json("models", model_name, f"{version}.json")
                if record is None:
                    continue
                if _has(record.get("tags"), wanted_tags) and _has(
                        record.get("properties"), wanted_props):
                    kept.append(Model._from_record(workspace, record))
            out.extend(kept[-1:] if latest else kept)
        return out

    def download(self, target_dir: str | os.PathLike = ".",
                 exist_ok: bool = False) -> str:
        """Copy the stored model into ``target_dir``; returns the copy's path."""
        target = os.path.join(os.path.abspath(os.fspath(target_dir)), self.file_name)
        if os.path.exists(target):
            if not exist_ok:
                raise WorkspaceError(
                    f"{target} exists; pass exist_ok=True to replace it")
            if os.path.isdir(target):
                shutil.rmtree(target)
            else:
                os.remove(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        _copy_to_local(self.path, self.storage_options, target)
        return target

    # -- inside the entry script -------------------------------------------------------
    @staticmethod
    def get_model_path(model_name: str, version: int | None = None,
                       workspace: Workspace | None = None) -> str:
        """The local path of a model, for ``init()``.

        In a job, the models given to ``ParallelRunStep(models=[...])`` are looked
        up (the latest of several versions of one name, unless ``version`` says);
        a model in a remote workspace is downloaded once per machine into a cache
        folder (the setting ``daskscore.model-cache``, default under the temp
        folder, read where the script runs). Outside
        a job (testing a script locally) the model is taken from ``workspace`` or
        ``Workspace.from_config()``.

        Raises
        ------
        NotRegisteredError
            In a job: the model was not passed to the step. Outside: it is not
            registered.
        """
        listed = os.environ.get(MODELS_ENV)
        if listed is not None and workspace is None:
            entries = json.loads(listed or "[]")
            matches = [e for e in entries if e.get("name") == model_name and (
                version is None or int(e.get("version") or 0) == int(version))]
            if not matches:
                raise NotRegisteredError(
                    "model", model_name, version=version,
                    known=[f"{e.get('name')}:{e.get('version')}" for e in entries],
                    workspace="this step's models",
                    hint="pass it to the step: ParallelRunStep(models=[ds.Model(ws, "
                         f"{model_name!r})])",
                )
            entry = max(matches, key=lambda e: int(e.get("version") or 0))
            options = entry.get("storage_options") or STEP_MODEL_OPTIONS.get(
                entry["path"], {})
            return _local_path(entry["path"], options)
        model = Model(workspace or Workspace.from_config(), model_name, version)
        return _local_path(model.path, model.storage_options)


def _wanted(filters: Any, what: str) -> list[tuple[str, Any]]:
    """``(key, value or _ANY)`` pairs of a tags/properties filter."""
    if not filters:
        return []
    if isinstance(filters, Mapping):
        return [(str(k), v) for k, v in filters.items()]
    if isinstance(filters, str):
        filters = [filters]
    out: list[tuple[str, Any]] = []
    for item in filters:
        if isinstance(item, str):
            out.append((item, _ANY))
        elif isinstance(item, list | tuple) and len(item) == 2:
            out.append((str(item[0]), item[1]))
        else:
            raise WorkspaceError(
                f"Model.list {what}={filters!r}: give keys and [key, value] pairs, "
                f"e.g. {what}=['stage', ['store', '1001']], or a dict")
    return out


_ANY = object()


def _has(values: Mapping[str, Any] | None, wanted: list[tuple[str, Any]]) -> bool:
    values = values or {}
    return all(k in values and (v is _ANY or str(values[k]) == str(v))
               for k, v in wanted)


def _store_copy(workspace: Workspace, source: str, model_name: str, version: int,
                file_name: str) -> None:
    """Copy ``source`` into the workspace as ``version`` of ``model_name``.

    A copy that fails part-way leaves nothing of that version behind.
    """
    target = workspace._path("models", model_name, str(version), file_name)
    try:
        if workspace.local:
            if os.path.isdir(source):
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
        else:
            workspace._fs.put(source, target, recursive=os.path.isdir(source))
    except BaseException:
        workspace._delete("models", model_name, str(version), recursive=True)
        raise


def _copy_to_local(url: str, storage_options: dict[str, Any], target: str) -> None:
    fs, path = url_to_fs(url, storage_options)
    if fs.isdir(path):
        os.makedirs(target, exist_ok=True)
        for remote in fs.find(path):
            rel = remote[len(path.rstrip("/")) + 1:]
            local = os.path.join(target, *rel.split("/"))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            fs.get_file(remote, local)
    else:
        fs.get_file(path, target)


def _local_path(url: str, storage_options: dict[str, Any]) -> str:
    """``url`` itself when local, else a cached local copy (downloaded once)."""
    if "://" not in url or url.startswith("file://"):
        path = url.removeprefix("file://")
        if not os.path.exists(path):
            raise WorkspaceError(
                f"the stored model {path} is missing; is the workspace on a disk this "
                "machine can see? Share it on blob storage for remote workers"
            )
        return path
    if url in _LOCAL_COPIES and os.path.exists(_LOCAL_COPIES[url]):
        return _LOCAL_COPIES[url]
    cache = _settings.get("model-cache") or os.path.join(tempfile.gettempdir(),
                                                         "daskscore-model-cache")
    key = hashlib.sha256(url.encode()).hexdigest()[:24]
    name = url.rstrip("/").rsplit("/", 1)[-1]
    final_dir = os.path.join(cache, key)
    final = os.path.join(final_dir, name)
    if not os.path.exists(final):
        # download beside, then rename: other processes see all of it or nothing
        tmp_dir = os.path.join(cache, f".{key}.tmp-{uuid.uuid4().hex}")
        os.makedirs(tmp_dir)
        try:
            _copy_to_local(url, storage_options, os.path.join(tmp_dir, name))
            try:
                os.rename(tmp_dir, final_dir)
            except OSError:
                if not os.path.exists(final):  # not another process winning the race
                    raise
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    _LOCAL_COPIES[url] = final
    return final
