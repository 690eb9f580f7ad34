"""FileDataset inputs: lists of files, ``mini_batch_size`` files at a time.

``run()`` gets local paths. Local files are handed over as they are; blobs are
downloaded first (several at once, keeping their relative paths) into the
mini-batch's own scratch folder, and the next mini-batch's blobs can be fetched
ahead while the current one is scored.
"""

from __future__ import annotations

import os
from typing import Any

from .._protocol import MiniBatchSpec
from ..storage import download, is_local, url_to_fs
from ._common import fingerprint


def plan_files(
    entries: list[tuple[str, Any, Any]], size: int
) -> tuple[list[MiniBatchSpec], str]:
    """Mini-batches of ``size`` listed files, in path order, and their fingerprint."""
    paths = [p for p, _, _ in entries]
    specs = [
        MiniBatchSpec(
            index=i,
            kind="files",
            paths=tuple(paths[start : start + size]),
            items=len(paths[start : start + size]),
        )
        for i, start in enumerate(range(0, len(paths), size))
    ]
    return specs, fingerprint(entries, "files", size)


def plain_local(path: str, storage_options: dict[str, Any]) -> bool:
    """Whether ``path`` is an absolute local path that needs no filesystem lookup.

    What a local listing plans (``/data/in/img-1.png``): no protocol, no chained
    URL, no storage options. Resolving each such path through fsspec cost ~20 us
    a file, more than reading a small one.
    """
    return (
        not storage_options
        and path.startswith("/")
        and "://" not in path
        and "::" not in path
    )


def split_local(
    paths: tuple[str, ...], storage_options: dict[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """``(local files that exist, local files that do not, remote URLs)``."""
    good: list[str] = []
    missing: list[str] = []
    remote: list[str] = []
    isfile = os.path.isfile
    for path in paths:
        if plain_local(path, storage_options):
            (good if isfile(path) else missing).append(path)
            continue
        fs, fpath = url_to_fs(path, storage_options)
        if is_local(fs):
            (good if isfile(fpath) else missing).append(fpath)
        else:
            remote.append(path)
    return good, missing, remote


def remote_paths(paths: tuple[str, ...], storage_options: dict[str, Any]) -> list[str]:
    """The paths of a mini-batch that live on remote storage (worth prefetching)."""
    return [
        p
        for p in paths
        if not plain_local(p, storage_options)
        and not is_local(url_to_fs(p, storage_options)[0])
    ]


def download_folder(scratch_dir: str, index: int) -> str:
    """The scratch folder the blobs of mini-batch ``index`` are downloaded into."""
    return os.path.join(scratch_dir, "download", str(index))


def download_mini_batch(
    scratch_dir: str, index: int, remote: list[str], storage_options: dict[str, Any]
):
    """Download a mini-batch's blobs: ``(local paths or None, errors by URL)``."""
    return download(remote, download_folder(scratch_dir, index), storage_options)


def missing_problem(missing: list[str]) -> str | None:
    """The READ_ERROR line for the files of a mini-batch that cannot be read."""
    if not missing:
        return None
    shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
    return f"{len(missing)} file(s) cannot be read: {shown}"
