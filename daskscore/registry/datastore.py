"""Datastores: named places where data lives, registered in a workspace.

A local (or shared-filesystem) folder, or an Azure Blob Storage container. The
workspace records where a datastore points and how its credential is found --
anonymous access, an environment variable, the environment's ``AZURE_STORAGE_*``
settings or an Azure identity, or this machine's secret store -- never the
credential itself. ``datastore.path("mnist/")`` gives a :class:`DataPath` usable
as a dataset's path.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import check_name
from ..errors import ConfigError, NotRegisteredError, WorkspaceError
from ..storage import url_to_fs
from ._common import (
    REGISTRY_NAME,
    is_url,
    join,
    read_secrets,
    secrets_file,
    utc_now,
    write_secret,
)

# a registry._folder.WorkspaceFolder; that module imports this one, so the type
# is not imported here (no import cycle, not even for type checkers)
Workspace = Any

__all__ = ["DEFAULT_DATASTORE", "DataPath", "Datastore"]

DEFAULT_DATASTORE = "workspacestore"
_CREDENTIAL_TYPES = ("account_key", "sas_token", "connection_string")


# -- datastores --------------------------------------------------------------------


class DataPath(os.PathLike):
    """A path on a datastore: ``datastore.path("mnist/")``.

    Usable wherever a path is (``Dataset.File.from_files(path=...)``,
    ``open(...)`` for local datastores); ``storage_options`` carries the
    datastore's credential for remote ones.
    """

    def __init__(self, datastore: Datastore, path_on_datastore: str = "") -> None:
        self.datastore = datastore
        self.path_on_datastore = path_on_datastore.lstrip("/")

    @property
    def url(self) -> str:
        """The full local path or URL."""
        return self.datastore._full(self.path_on_datastore)

    @property
    def storage_options(self) -> dict[str, Any]:
        """The datastore's fsspec options (with its credential, resolved now)."""
        return self.datastore.storage_options

    def __fspath__(self) -> str:
        return self.url

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return (f"DataPath(datastore={self.datastore.name!r}, "
                f"path_on_datastore={self.path_on_datastore!r})")


def _local_relative(folder: str, path: str) -> str | None:
    """Local ``path`` relative to the local ``folder``, or None when outside it."""
    root = os.path.abspath(folder)
    full = os.path.abspath(path)
    trailing = "/" if path.endswith(("/", os.sep)) and full != root else ""
    if full == root:
        return ""
    if full.startswith(root.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, root).replace(os.sep, "/") + trailing
    return None


def _copy_tree(src: str, fs: Any, root: str, overwrite: bool) -> int:
    """Copy the local folder ``src``'s files below ``root`` on ``fs``; how many.

    Existing files are kept unless ``overwrite``.
    """
    copied = 0
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, src).replace(os.sep, "/")
            dest = join(root, rel)
            if not overwrite and fs.exists(dest):
                continue
            parent = dest.rsplit("/", 1)[0]
            fs.makedirs(parent, exist_ok=True)
            fs.put_file(full, dest)
            copied += 1
    return copied


def _files_below(files: list[str | os.PathLike],
                 relative_root: str | os.PathLike | None) -> tuple[list[str], str]:
    """``upload_files``' files as absolute paths, and the folder they are taken
    relative to (``relative_root``, default their common folder)."""
    paths = [os.path.abspath(os.fspath(f)) for f in files]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WorkspaceError(f"upload_files: {missing[0]} is not a file{more}")
    if relative_root is not None:
        root_dir = os.path.abspath(os.fspath(relative_root))
    elif paths:
        root_dir = os.path.commonpath([os.path.dirname(p) for p in paths])
    else:
        root_dir = os.getcwd()
    outside = [p for p in paths if _local_relative(root_dir, p) is None]
    if outside:
        raise WorkspaceError(f"upload_files: {outside[0]} is not below "
                             f"relative_root={root_dir}")
    return paths, root_dir


def _secret(datastore: Datastore, credential: dict[str, Any]) -> str:
    """A datastore's secret: from its environment variable or the secret store."""
    kind = credential["type"]
    env = credential.get("env")
    if env:
        value = os.environ.get(env)
        if not value:
            raise WorkspaceError(
                f"datastore {datastore.name!r} takes its {kind} from the environment "
                f"variable {env}, which is not set; set it and try again"
            )
        return value
    workspace_id = datastore.workspace.id
    stored = read_secrets(workspace_id).get(f"datastore:{datastore.name}", {})
    if kind not in stored:
        raise WorkspaceError(
            f"the {kind} of datastore {datastore.name!r} is not in this machine's "
            f"secret store ({secrets_file(workspace_id)}); register the "
            "datastore again here, or register it with "
            f"{kind}_env='VARIABLE' so every machine reads it from the environment"
        )
    return stored[kind]


class Datastore:
    """A named place where data lives: a local folder or an Azure Blob container.

    Get one with :meth:`get`, ``ws.datastores[name]`` or
    ``ws.get_default_datastore()``; create one with :meth:`register_local` or
    :meth:`register_azure_blob_container`.

    Attributes
    ----------
    name, datastore_type
        The name and ``"local"`` or ``"azure_blob"``.
    url
        The root: a local folder or ``<blob endpoint>/<container>``.
    container_name, account_name
        For Azure Blob datastores.
    credential_type
        How the credential is found: ``"none"`` (local), ``"anonymous"``,
        ``"default"`` (``AZURE_STORAGE_*`` or an Azure identity), or
        ``"account_key"`` / ``"sas_token"`` / ``"connection_string"`` from an
        environment variable or the secret store.
    """

    def __init__(self, workspace: Workspace, record: dict[str, Any]) -> None:
        self.workspace = workspace
        self._record = dict(record)
        self.name: str = record["name"]
        self.datastore_type: str = record["type"]
        self.container_name: str | None = record.get("container_name")
        self.account_name: str | None = record.get("account_name")
        credential = record.get("credential") or {"type": "none"}
        self.credential_type: str = credential["type"]
        if self.datastore_type == "local":
            self.url = record["path"]
        else:
            self.url = join(record["endpoint"], record["container_name"])

    def __repr__(self) -> str:
        return (f"Datastore(name={self.name!r}, type={self.datastore_type!r}, "
                f"url={self.url!r})")

    # -- paths -------------------------------------------------------------------------
    def path(self, path: str = "") -> DataPath:
        """A path on this datastore, e.g. ``datastore.path("mnist/")``."""
        return DataPath(self, path)

    def _full(self, rel: str) -> str:
        rel = rel.lstrip("/")
        if not rel:
            return self.url
        if self.datastore_type == "local" and not is_url(self.url):
            return os.path.join(self.url, rel)
        return join(self.url, rel) + ("/" if rel.endswith("/") else "")

    def _relative(self, path: str) -> str | None:
        """``path`` relative to this datastore's root, or None when outside it."""
        if self.datastore_type == "local" and not is_url(self.url):
            return None if is_url(path) else _local_relative(self.url, path)
        root = self.url.rstrip("/")
        if path.rstrip("/") == root:
            return ""
        if path.startswith(root + "/"):
            return path[len(root) + 1:]
        return None

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options for this datastore, credential included (resolved now).

        Raises
        ------
        WorkspaceError
            The credential's environment variable is not set, or it is not in this
            machine's secret store.
        """
        if self.datastore_type == "local":
            return dict(self._record.get("storage_options") or {})
        credential = self._record.get("credential") or {"type": "default"}
        kind = credential["type"]
        options: dict[str, Any] = {"account_name": self.account_name}
        if kind == "anonymous":
            options["anon"] = True
        elif kind in _CREDENTIAL_TYPES:
            options[kind] = _secret(self, credential)
            if kind == "connection_string":
                options.pop("account_name")
        return options

    # -- data --------------------------------------------------------------------------
    def upload(self, src_dir: str | os.PathLike, target_path: str | None = None,
               overwrite: bool = False, show_progress: bool = False) -> DataPath:
        """Copy a local folder's files to ``target_path`` on this datastore.

        Existing files are kept unless ``overwrite``. Returns the target's
        :class:`DataPath`.
        """
        src = os.path.abspath(os.fspath(src_dir))
        if not os.path.isdir(src):
            raise WorkspaceError(f"upload: {src} is not a folder")
        target = self.path(target_path or "")
        fs, root = url_to_fs(target.url, self.storage_options)
        copied = _copy_tree(src, fs, root, overwrite)
        if show_progress:
            print(f"Uploaded {copied} files to {target.url}")
        return target

    def upload_files(self, files: list[str | os.PathLike],
                     relative_root: str | os.PathLike | None = None,
                     target_path: str | None = None, overwrite: bool = False,
                     show_progress: bool = False) -> DataPath:
        """Copy local files to ``target_path`` on this datastore.

        Each file keeps its path relative to ``relative_root`` (default: the
        files' common folder). Existing files are kept unless ``overwrite``.
        Returns the target's :class:`DataPath`.
        """
        paths, root_dir = _files_below(files, relative_root)
        target = self.path(target_path or "")
        fs, root = url_to_fs(target.url, self.storage_options)
        copied = 0
        for path in paths:
            dest = join(root, os.path.relpath(path, root_dir).replace(os.sep, "/"))
            if not overwrite and fs.exists(dest):
                continue
            fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(path, dest)
            copied += 1
        if show_progress:
            print(f"Uploaded {copied} files to {target.url}")
        return target

    # -- registry ----------------------------------------------------------------------
    @classmethod
    def _default(cls, workspace: Workspace) -> Datastore:
        return cls(workspace, {
            "name": DEFAULT_DATASTORE, "type": "local", "path": workspace._url("data"),
            "storage_options": workspace.storage_options,
        })

    @classmethod
    def get(cls, workspace: Workspace, datastore_name: str) -> Datastore:
        """The datastore registered as ``datastore_name``.

        Raises
        ------
        NotRegisteredError
            No datastore of that name (the message lists the registered ones).
        """
        if datastore_name == DEFAULT_DATASTORE:
            return cls._default(workspace)
        record = None
        if REGISTRY_NAME.matches(datastore_name):
            record = workspace._read_json("datastores", f"{datastore_name}.json")
        if record is None:
            known = [DEFAULT_DATASTORE, *workspace._list_names("datastores",
                                                                suffix=".json")]
            raise NotRegisteredError(
                "datastore", datastore_name, known=sorted(known),
                workspace=workspace.url,
                hint="register it with ds.Datastore.register_local(ws, name, path) "
                     "or ds.Datastore.register_azure_blob_container(...)",
            )
        return cls(workspace, record)

    @classmethod
    def get_default(cls, workspace: Workspace) -> Datastore:
        """The workspace's default datastore."""
        return workspace.get_default_datastore()

    def set_as_default(self) -> None:
        """Make this the workspace's default datastore."""
        self.workspace.set_default_datastore(self.name)

    def unregister(self) -> None:
        """Remove this datastore from the workspace (its data is left alone)."""
        if self.name == DEFAULT_DATASTORE:
            raise WorkspaceError(f"the built-in datastore {DEFAULT_DATASTORE!r} cannot "
                                 "be unregistered")
        self.workspace._delete("datastores", f"{self.name}.json")
        write_secret(self.workspace.id, f"datastore:{self.name}", None)

    @classmethod
    def _register(cls, workspace: Workspace, record: dict[str, Any],
                  overwrite: bool, secret: dict[str, str] | None) -> Datastore:
        name = check_name("datastore_name", record["name"], REGISTRY_NAME)
        if name == DEFAULT_DATASTORE:
            raise ConfigError("datastore_name", name,
                              f"any name but the built-in {DEFAULT_DATASTORE!r}")
        existing = workspace._read_json("datastores", f"{name}.json")
        comparable = {k: v for k, v in record.items() if k != "created"}
        if existing is not None and not overwrite:
            same = {k: v for k, v in existing.items() if k != "created"} == comparable
            if not same or secret:
                raise WorkspaceError(
                    f"datastore {name!r} is already registered (pointing at "
                    f"{cls(workspace, existing).url}); pass overwrite=True to "
                    "replace it"
                )
            return cls(workspace, existing)
        record = {**record, "created": utc_now()}
        write_secret(workspace.id, f"datastore:{name}", secret)
        workspace._write_json(record, "datastores", f"{name}.json")
        return cls(workspace, record)

    @classmethod
    def register_local(cls, workspace: Workspace, datastore_name: str,
                       path: str | os.PathLike, overwrite: bool = False,
                       create_if_not_exists: bool = True) -> Datastore:
        """Register a local (or shared-filesystem) folder as a datastore.

        Parameters
        ----------
        workspace, datastore_name
            Where to register it, and its name.
        path
            The folder; stored as an absolute path.
        overwrite
            Replace a datastore of the same name (else registering a different
            definition under an existing name raises).
        create_if_not_exists
            Create the folder when it is missing.
        """
        folder = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if create_if_not_exists:
            os.makedirs(folder, exist_ok=True)
        elif not os.path.isdir(folder):
            raise WorkspaceError(f"datastore {datastore_name!r}: {folder} is not a "
                                 "folder; create it or pass create_if_not_exists=True")
        return cls._register(workspace, {"name": datastore_name, "type": "local",
                                         "path": folder}, overwrite, None)

    @classmethod
    def register_azure_blob_container(
        cls,
        workspace: Workspace,
        datastore_name: str,
        container_name: str,
        account_name: str,
        sas_token: str | None = None,
        account_key: str | None = None,
        protocol: str | None = None,
        endpoint: str | None = None,
        overwrite: bool = False,
        create_if_not_exists: bool = False,
        *,
        connection_string: str | None = None,
        anonymous: bool = False,
        account_key_env: str | None = None,
        sas_token_env: str | None = None,
        connection_string_env: str | None = None,
    ) -> Datastore:
        """Register an Azure Blob Storage container as a datastore.

        The credential is one of (at most one may be given):

        - ``anonymous=True``: a public container (the tutorial's ``sampledata``);
        - ``account_key_env`` / ``sas_token_env`` / ``connection_string_env``: the
          name of an environment variable read when the datastore is used;
        - ``account_key`` / ``sas_token`` / ``connection_string`` as values: kept
          in this machine's secret store, outside the workspace;
        - nothing: the environment's ``AZURE_STORAGE_*`` settings for this
          account, else an Azure identity (``DefaultAzureCredential``).

        Parameters
        ----------
        endpoint
            The storage suffix (``"core.windows.net"``, the default) or a full blob
            endpoint URL such as ``"http://127.0.0.1:10000/devstoreaccount1"``
            (Azurite).
        protocol
            ``"https"`` (default) or ``"http"`` with a suffix ``endpoint``.
        create_if_not_exists
            Create the container when it does not exist.
        """
        _require_names(container_name=container_name, account_name=account_name)
        credential, secret = _blob_credential(
            anonymous,
            account_key=(account_key, account_key_env),
            sas_token=(sas_token, sas_token_env),
            connection_string=(connection_string, connection_string_env),
        )
        record = {"name": datastore_name, "type": "azure_blob",
                  "container_name": container_name, "account_name": account_name,
                  "endpoint": _blob_endpoint(account_name, endpoint, protocol),
                  "credential": credential}
        datastore = cls._register(workspace, record, overwrite, secret)
        if create_if_not_exists:
            _create_container(datastore)
        return datastore


def _require_names(**names: Any) -> None:
    """Each of ``names`` (field: value) is a non-empty string, else a ConfigError."""
    for field, value in names.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(field, value, "a non-empty string")


def _blob_credential(
    anonymous: bool, **given: tuple[str | None, str | None]
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The credential record, and the secret to store, of an Azure Blob datastore.

    ``given`` maps each credential type to its ``(value, environment variable)``;
    at most one of them, or ``anonymous``, may be given.
    """
    chosen = [(kind, value, env) for kind, (value, env) in given.items()
              if value or env]
    if len(chosen) + bool(anonymous) > 1 or any(v and e for _, v, e in chosen):
        raise ConfigError(
            "credential", "several",
            "at most one of anonymous, account_key(_env), sas_token(_env), "
            "connection_string(_env)",
        )
    if anonymous:
        return {"type": "anonymous"}, None
    if not chosen:
        return {"type": "default"}, None
    kind, value, env = chosen[0]
    if env:
        return {"type": kind, "env": env}, None
    secret = {kind: value.lstrip("?") if kind == "sas_token" else value}
    return {"type": kind, "store": "secret_store"}, secret


def _blob_endpoint(account_name: str, endpoint: str | None,
                   protocol: str | None) -> str:
    """The blob endpoint URL: ``endpoint`` when it is one, else built from a suffix."""
    if endpoint and is_url(endpoint):
        return endpoint.rstrip("/")
    suffix = (endpoint or "core.windows.net").strip(".")
    return f"{protocol or 'https'}://{account_name}.blob.{suffix}"


def _create_container(datastore: Datastore) -> None:
    """Create the datastore's container when it does not exist."""
    fs, root = url_to_fs(datastore.url, datastore.storage_options)
    if not fs.exists(root):
        fs.mkdir(root)
