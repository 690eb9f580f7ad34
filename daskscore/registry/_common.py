"""Helpers shared by the workspace registries: names, timestamps, paths, secrets.

The secret store keeps credentials given as values (a datastore's account key, SAS
token or connection string) outside the workspace, in
``~/.daskscore/secrets/<workspace id>.json`` (mode 0600; the setting
``daskscore.secrets-dir`` moves it).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .. import _settings
from ..config import NameRule
from ..errors import WorkspaceError

# datastore, dataset, model and experiment names (``config.check_name`` checks them)
REGISTRY_NAME = NameRule(
    re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"),
    "1-255 characters: letters, digits, '_', '.' and '-', starting with a "
    "letter or digit",
)


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (what registries record)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *(n.strip("/") for n in names if n)])


def is_url(path: str) -> bool:
    return "://" in path


# -- the secret store ------------------------------------------------------------


def secrets_file(workspace_id: str) -> str:
    folder = _settings.get("secrets-dir") or os.path.join(
        os.path.expanduser("~"), ".daskscore", "secrets"
    )
    return os.path.join(folder, f"{workspace_id}.json")


def read_secrets(workspace_id: str) -> dict[str, Any]:
    try:
        with open(secrets_file(workspace_id), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def write_secret(workspace_id: str, key: str, value: dict[str, str] | None) -> None:
    """Store (``None``: remove) one datastore's secret, readable by the user only."""
    path = secrets_file(workspace_id)
    secrets = read_secrets(workspace_id)
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


def find_config(
    path: str | os.PathLike | None,
    names: Sequence[str],
    accept: Callable[[Any], bool],
) -> tuple[str, dict[str, Any]] | None:
    """The first config file at ``path`` (a file, or a folder and each of its
    parents; default the current folder) whose JSON ``accept`` takes: its path
    and content; ``names`` are the file names looked for in each folder
    (``config.json``, ``.azureml/config.json``).

    Raises
    ------
    WorkspaceError
        A config file found there cannot be read.
    """
    start = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
    if os.path.isfile(start):
        candidates = [start]
    else:
        candidates = []
        folder = start
        while True:
            candidates.extend(os.path.join(folder, n) for n in names)
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
            raise WorkspaceError(
                f"cannot read workspace config {candidate}: {exc}"
            ) from exc
        if isinstance(config, dict) and accept(config):
            return candidate, config
    return None
