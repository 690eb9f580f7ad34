"""The workspace folder itself: where it is, its JSON files, versions, datastores.

:class:`WorkspaceFolder` is what every registry needs of a workspace; the public
:class:`~daskscore.registry.workspace.Workspace` adds the registries on top of it
(datasets, models, experiments). Modules below the facade (datastores, models,
registered datasets, the pipeline's run history) take a ``WorkspaceFolder``.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from ..errors import ConfigError, NotRegisteredError, WorkspaceError
from ..output.store import write_atomic
from ..storage import is_local, safe_storage_options, url_to_fs
from ._common import find_config, is_url, join, utc_now
from .datastore import DEFAULT_DATASTORE, Datastore

__all__ = ["WorkspaceFolder"]

DEFAULT_WORKSPACE = ".daskscore"
CONFIG_FILE_NAMES = ("daskscore.json", "config.json")
_FORMAT = 1


# -- the workspace ---------------------------------------------------------------


class WorkspaceFolder:
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
        return isinstance(other, WorkspaceFolder) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    # -- config files ----------------------------------------------------------------
    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None) -> WorkspaceFolder:
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
        # a config.json without a "workspace" key is somebody else's
        found = find_config(path, CONFIG_FILE_NAMES, lambda c: "workspace" in c)
        if found is not None:
            candidate, config = found
            target = os.fspath(config["workspace"])
            if not is_url(target):
                target = os.path.join(os.path.dirname(candidate),
                                      os.path.expanduser(target))
            try:
                return cls(target, config.get("storage_options"), create=False)
            except WorkspaceError as exc:
                raise WorkspaceError(f"{exc} (named by {candidate})") from None
        start = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
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

    def _registered(self, folder: str) -> list[str]:
        """The names with at least one version in a registry folder, sorted."""
        return [n for n in self._list_names(folder) if self._versions(folder, n)]

    def _latest(self, folder: str, name: str) -> tuple[int, dict[str, Any]] | None:
        """The highest version of ``name`` in a registry folder and its record."""
        versions = self._versions(folder, name)
        if not versions:
            return None
        return versions[-1], self._read_json(folder, name, f"{versions[-1]}.json")

    def _version_record(
        self,
        kind: str,
        name: Any,
        version: int | str | None,
        *,
        allowed: str,
        hint: str,
    ) -> dict[str, Any]:
        """The record of one version of ``name`` in the registry ``<kind>s/``.

        ``version`` is a number, or ``"latest"`` / None for the highest one.

        Raises
        ------
        NotRegisteredError
            No ``kind`` of that name (the message lists the registered names and
            says ``hint``), or not that version (it lists the versions).
        ConfigError
            ``version`` is no number (``allowed`` says what is).
        """
        folder = f"{kind}s"
        versions = self._versions(folder, name) if isinstance(name, str) else []
        if not versions:
            raise NotRegisteredError(kind, name, known=self._registered(folder),
                                     workspace=self.url, hint=hint)
        if version in (None, "latest"):
            number = versions[-1]
        else:
            try:
                number = int(version)
            except (TypeError, ValueError):
                raise ConfigError("version", version, allowed) from None
        if number not in versions:
            raise NotRegisteredError(kind, name, version=number, known=versions,
                                     workspace=self.url)
        return self._read_json(folder, name, f"{number}.json")

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
