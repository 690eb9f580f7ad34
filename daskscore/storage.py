"""Where data lives: turning URLs and storage options into fsspec filesystems."""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

__all__ = ["is_local", "url_to_fs"]


def url_to_fs(
    urlpath: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem and the path inside it for ``urlpath``."""
    return fsspec.core.url_to_fs(str(urlpath), **(storage_options or {}))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local disk (paths can be handed to ``run()`` as is)."""
    return isinstance(fs, LocalFileSystem)
