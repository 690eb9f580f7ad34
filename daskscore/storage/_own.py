"""daskscore's own files never become input, wherever the output folder is.

A step's output folder may sit inside one of its input folders (``--input data/
--output data/out``). Listings then leave out:

- the output folder of the step being planned, whole (:func:`leaving_out`, set by
  ``ParallelRunStep.plan()``);
- in any listing (the dataset API too), every folder that holds daskscore's
  marker (``.daskscore/`` with a ``manifest.json`` or a ``lock.json``): its
  ``.daskscore/``, its ``logs/`` and, when the folder lies inside the one listed,
  its collected file (named in the manifest). An output folder listed itself
  (``out/*``, a pipeline reading an earlier step's collected file) keeps its
  collected file and ``outputs/``.

What is left out is said in one info line per listing.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

from .._protocol import LOGS_DIR, MANIFEST_FILE, STATE_DIR
from ..errors import DatasetError
from ._urls import _GLOB_CHARS, is_local, resolve, url_to_fs

__all__ = ["leaving_out", "without_own_files"]

logger = logging.getLogger("daskscore")

# what an output folder holds besides the manifest: the lock (output.lock)
_MARKERS = (MANIFEST_FILE, "lock.json")
# the collected file's name when the step's config gave none (config.py)
_DEFAULT_OUTPUT_FILE = "parallel_run_step.txt"

# the output folders of the step being planned: (filesystem, path)
_LEFT_OUT: contextvars.ContextVar[tuple[tuple[Any, str], ...]] = contextvars.ContextVar(
    "daskscore_left_out", default=()
)


@contextlib.contextmanager
def leaving_out(
    url: str | os.PathLike | None, storage_options: Mapping[str, Any] | None
) -> Iterator[None]:
    """Listings in this block leave out the folder ``url`` (a step's output)."""
    if url is None:
        yield
        return
    try:
        fs, path = url_to_fs(*resolve(os.fspath(url), storage_options))
    except ValueError:  # a bad output URL is reported where it is used
        yield
        return
    if is_local(fs):
        path = os.path.realpath(path)
    token = _LEFT_OUT.set((*_LEFT_OUT.get(), (fs, path.rstrip("/"))))
    try:
        yield
    finally:
        _LEFT_OUT.reset(token)


def without_own_files(
    fs: Any, found: dict[str, Any], root: str, text: str, glob: bool = False
) -> dict[str, Any]:
    """``found`` (a listing of ``root``, ``{path: info}``) less daskscore's files
    (removed from ``found`` itself, which is returned).

    ``glob``: the listing matched a pattern, so it may hold an output folder's
    logs or collected file without its ``.daskscore/`` files: the folders of what
    it found are looked at for a marker too.
    """
    if not found:
        return found
    outputs = _step_outputs(fs, root)
    prefixes = [o + "/" for o in outputs]
    files: set[str] = set()
    listed = _static_root(root).rstrip("/")
    for output in _marked_outputs(fs, found, glob):
        outputs.append(output)
        prefixes += [f"{output}/{STATE_DIR}/", f"{output}/{LOGS_DIR}/"]
        if output.rstrip("/") != listed:
            files.add(f"{output}/{_collected_name(fs, output)}")
    if not outputs:
        return found
    starts = tuple(prefixes)
    # removed in place: copying a listing of millions costs more than the scan
    gone = [p for p in found if p.startswith(starts) or p in files]
    if not gone:
        return found
    shown = sorted(set(outputs))
    if len(gone) == len(found):
        raise DatasetError(
            f"input {text!r} holds only daskscore's own output ({shown[0]}): its "
            "output folders are never input; give the folder of the input data"
        )
    for p in gone:
        del found[p]
    logger.info(
        "input %s: left out %d file(s) of daskscore's own output in %s (an "
        "output folder, its .daskscore/, logs/ and collected file are never "
        "input)",
        text,
        len(gone),
        ", ".join(shown[:3])
        + (f" and {len(shown) - 3} more" if len(shown) > 3 else ""),
    )
    return found


def _static_root(path: str) -> str:
    """The folder a glob searches (``data/*/x.csv`` -> ``data``); else ``path``."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in _GLOB_CHARS):
            return "/".join(parts[:i])
    return path


def _step_outputs(fs: Any, root: str) -> list[str]:
    """The step's output folders (:func:`leaving_out`) as paths of this listing."""
    out = []
    for output_fs, path in _LEFT_OUT.get():
        if type(output_fs) is not type(fs) or _account(output_fs) != _account(fs):
            continue
        if is_local(fs):
            # the listing's paths are under abspath(root); the output's real path
            real_root = os.path.realpath(root)
            if path == real_root or path.startswith(real_root.rstrip("/") + "/"):
                rel = os.path.relpath(path, real_root)
                out.append(os.path.normpath(os.path.join(os.path.abspath(root), rel)))
        else:
            out.append(path)
    return out


def _account(fs: Any) -> Any:
    return getattr(fs, "account_name", None)


def _marked_outputs(fs: Any, found: dict[str, Any], glob: bool) -> list[str]:
    """Output folders among what was listed: those holding daskscore's marker."""
    inside = f"/{STATE_DIR}/"
    roots: set[str] = set()
    candidates: set[str] = set()
    for p in found:
        at = p.find(inside)
        if at >= 0:
            roots.add(p[:at])
        elif glob:  # beside what matched, and above a logs/ folder
            parts = p.split("/")[:-1]
            candidates.add("/".join(parts))
            if LOGS_DIR in parts:
                candidates.add(
                    "/".join(parts[: len(parts) - parts[::-1].index(LOGS_DIR) - 1])
                )
    marked = {r for r in roots if _has_marker(fs, r, found)}
    marked.update(c for c in candidates - roots if _has_marker(fs, c, found))
    return sorted(marked)


def _has_marker(fs: Any, folder: str, found: dict[str, Any]) -> bool:
    state = f"{folder}/{STATE_DIR}/"
    if any(state + m in found for m in _MARKERS):
        return True
    try:
        return any(fs.exists(state + m) for m in _MARKERS)
    except Exception:  # noqa: BLE001 - not readable: not an output folder
        return False


def _collected_name(fs: Any, folder: str) -> str:
    """The collected file's name, from the output folder's manifest."""
    try:
        manifest = json.loads(fs.cat_file(f"{folder}/{STATE_DIR}/{MANIFEST_FILE}"))
        config = manifest.get("settings", {}).get("config", {})
        name = manifest.get("output_file") or config.get("append_row_file_name")
    except Exception:  # noqa: BLE001 - no manifest (a lock only): the default
        name = None
    return posixpath.basename(str(name or _DEFAULT_OUTPUT_FILE))
