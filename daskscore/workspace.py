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

Credentials of Azure datastores are kept by reference: the name of an environment
variable, anonymous access, the environment's ``AZURE_STORAGE_*`` settings or an
Azure identity, or -- when a key, SAS token or connection string is given as a
value -- an entry in this machine's secret store
(``~/.daskscore/secrets/<workspace id>.json``, mode 0600, outside the workspace;
``DASKSCORE_SECRETS_DIR`` moves it). The workspace never holds them in clear.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

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
DEFAULT_DATASTORE = "workspacestore"
CONFIG_FILE_NAMES = ("daskscore.json", "config.json")
_FORMAT = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_NAME_RULE = ("1-255 characters: letters, digits, '_', '.' and '-', starting with a "
              "letter or digit")
_CREDENTIAL_TYPES = ("account_key", "sas_token", "connection_string")


def check_name(field: str, name: Any) -> str:
    """Validate a registry name (datastore, dataset, model, experiment)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(field, name, _NAME_RULE)
    return name


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (what registries record)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *(n.strip("/") for n in names if n)])


def _is_url(path: str) -> bool:
    return "://" in path


# -- the secret store ------------------------------------------------------------


def _secrets_file(workspace_id: str) -> str:
    folder = os.environ.get("DASKSCORE_SECRETS_DIR") or os.path.join(
        os.path.expanduser("~"), ".daskscore", "secrets"
    )
    return os.path.join(folder, f"{workspace_id}.json")


def _read_secrets(workspace_id: str) -> dict[str, Any]:
    try:
        with open(_secrets_file(workspace_id), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _write_secret(workspace_id: str, key: str, value: dict[str, str] | None) -> None:
    """Store (``None``: remove) one datastore's secret, readable by the user only."""
    path = _secrets_file(workspace_id)
    secrets = _read_secrets(workspace_id)
    if value is None:
        if key not in secrets:
            return
        secrets.pop(key)
    else:
        secrets[key] = value
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(secrets, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


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
        if not _is_url(url):
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
            if not _is_url(target):
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
        return _join(self._root, *names)

    def _url(self, *names: str) -> str:
        """A path or URL inside the workspace, usable with ``storage_options``."""
        if self.local:
            return os.path.join(self.url, *names)
        return _join(self.url, *names)

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
            self.url = _join(record["endpoint"], record["container_name"])

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
        if self.datastore_type == "local" and not _is_url(self.url):
            return os.path.join(self.url, rel)
        return _join(self.url, rel) + ("/" if rel.endswith("/") else "")

    def _relative(self, path: str) -> str | None:
        """``path`` relative to this datastore's root, or None when outside it."""
        if self.datastore_type == "local" and not _is_url(self.url):
            if _is_url(path):
                return None
            root = os.path.abspath(self.url)
            full = os.path.abspath(path)
            trailing = "/" if path.endswith(("/", os.sep)) and full != root else ""
            if full == root:
                return ""
            if full.startswith(root.rstrip(os.sep) + os.sep):
                return os.path.relpath(full, root).replace(os.sep, "/") + trailing
            return None
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
            options[kind] = self._secret(credential)
            if kind == "connection_string":
                options.pop("account_name")
        return options

    def _secret(self, credential: dict[str, Any]) -> str:
        kind = credential["type"]
        env = credential.get("env")
        if env:
            value = os.environ.get(env)
            if not value:
                raise WorkspaceError(
                    f"datastore {self.name!r} takes its {kind} from the environment "
                    f"variable {env}, which is not set; set it and try again"
                )
            return value
        stored = _read_secrets(self.workspace.id).get(f"datastore:{self.name}", {})
        if kind not in stored:
            raise WorkspaceError(
                f"the {kind} of datastore {self.name!r} is not in this machine's "
                f"secret store ({_secrets_file(self.workspace.id)}); register the "
                "datastore again here, or register it with "
                f"{kind}_env='VARIABLE' so every machine reads it from the environment"
            )
        return stored[kind]

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
        copied = 0
        for folder, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(folder, name)
                rel = os.path.relpath(full, src).replace(os.sep, "/")
                dest = _join(root, rel)
                if not overwrite and fs.exists(dest):
                    continue
                parent = dest.rsplit("/", 1)[0]
                fs.makedirs(parent, exist_ok=True)
                fs.put_file(full, dest)
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
        if isinstance(datastore_name, str) and _NAME_RE.match(datastore_name):
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
        _write_secret(self.workspace.id, f"datastore:{self.name}", None)

    @classmethod
    def _register(cls, workspace: Workspace, record: dict[str, Any],
                  overwrite: bool, secret: dict[str, str] | None) -> Datastore:
        name = check_name("datastore_name", record["name"])
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
        _write_secret(workspace.id, f"datastore:{name}", secret)
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
        for field, value in (("container_name", container_name),
                             ("account_name", account_name)):
            if not isinstance(value, str) or not value:
                raise ConfigError(field, value, "a non-empty string")
        given = {
            "account_key": (account_key, account_key_env),
            "sas_token": (sas_token, sas_token_env),
            "connection_string": (connection_string, connection_string_env),
        }
        chosen = [(kind, value, env) for kind, (value, env) in given.items()
                  if value or env]
        if len(chosen) + bool(anonymous) > 1 or any(v and e for _, v, e in chosen):
            raise ConfigError(
                "credential", "several",
                "at most one of anonymous, account_key(_env), sas_token(_env), "
                "connection_string(_env)",
            )
        secret = None
        if anonymous:
            credential: dict[str, Any] = {"type": "anonymous"}
        elif chosen:
            kind, value, env = chosen[0]
            if env:
                credential = {"type": kind, "env": env}
            else:
                credential = {"type": kind, "store": "secret_store"}
                secret = {kind: value.lstrip("?") if kind == "sas_token" else value}
        else:
            credential = {"type": "default"}
        if endpoint and _is_url(endpoint):
            blob_endpoint = endpoint.rstrip("/")
        else:
            suffix = (endpoint or "core.windows.net").strip(".")
            blob_endpoint = f"{protocol or 'https'}://{account_name}.blob.{suffix}"
        record = {"name": datastore_name, "type": "azure_blob",
                  "container_name": container_name, "account_name": account_name,
                  "endpoint": blob_endpoint, "credential": credential}
        datastore = cls._register(workspace, record, overwrite, secret)
        if create_if_not_exists:
            fs, root = url_to_fs(datastore.url, datastore.storage_options)
            if not fs.exists(root):
                fs.mkdir(root)
        return datastore


# -- the dataset registry ------------------------------------------------------------


def _source_of(workspace: Workspace, path: str) -> dict[str, str]:
    """How one dataset path is recorded: on a datastore when it is inside one."""
    text = os.fspath(path)
    if not _is_url(text):
        text = os.path.abspath(os.path.expanduser(text)) + (
            "/" if text.endswith(("/", os.sep)) else "")
    matches = []
    for datastore in workspace.datastores.values():
        rel = datastore._relative(text)
        if rel is not None:
            matches.append((len(datastore.url), datastore.name, rel))
    if matches:  # the innermost datastore wins
        _, name, rel = max(matches)
        return {"datastore": name, "path": rel}
    return {"url": text}


def _path_of(workspace: Workspace, source: dict[str, str]) -> tuple[str, dict]:
    if "url" in source:
        return source["url"], {}
    datastore = Datastore.get(workspace, source["datastore"])
    return datastore._full(source["path"]), datastore.storage_options


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
    paths = dataset.path
    many = isinstance(paths, list | tuple)
    sources = [_source_of(workspace, p) for p in (paths if many else [paths])]
    options = dict(dataset.storage_options or {})
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

    located = [_path_of(workspace, s) for s in record["sources"]]
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
            storage_options=options)
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


def _register_method(self: Any, workspace: Workspace, name: str,
                     description: str | None = None,
                     tags: Mapping[str, str] | None = None,
                     create_new_version: bool = False) -> Any:
    """Register this dataset in ``workspace`` under ``name`` (see register_dataset)."""
    return register_dataset(workspace, self, name, description=description, tags=tags,
                            create_new_version=create_new_version)


def _get_by_name(workspace: Workspace, name: str, version: int | str = "latest") -> Any:
    """The dataset registered as ``name`` in ``workspace`` (see get_dataset)."""
    return get_dataset(workspace, name, version)


def _install_dataset_methods() -> None:
    """Give the dataset classes ``register`` and ``Dataset.get_by_name``.

    Only where datasets.py does not define them itself; it is meant to delegate
    to :func:`register_dataset` / :func:`get_dataset`.
    """
    from . import datasets

    base = datasets._DatasetBase
    if not hasattr(base, "register"):
        base.register = _register_method
    if not hasattr(datasets.Dataset, "get_by_name"):
        datasets.Dataset.get_by_name = staticmethod(_get_by_name)
    for attr in ("name", "version", "description"):
        if not hasattr(base, attr):
            setattr(base, attr, None)


_install_dataset_methods()
