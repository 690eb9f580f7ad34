"""A step's run history on storage: metrics, tags and uploaded files.

What an entry script logs through ``Run.get_context()`` (``daskscore.azureml``)
lands in the step's run folder, ``<output>/logs/run/``::

    events/<agent>-<pid>-<id>.jsonl one JSON line per log/tag/status event, written
                                  only by that runner process (append-only; on
                                  storage without appends, ``<agent>-<pid>.<n>.jsonl``
                                  parts of at most REMOTE_PART_LINES lines, each
                                  written again whole as it grows)
    files/<run id>/<name>         what upload_file() uploaded, per run

Many runner processes log into the same run at once: each writes its own events
file, so nothing is lost and nothing collides; :func:`read_events` merges them
(ordered by time, then writer and sequence) and :func:`run_summary` folds them
into each run's metrics, tags, status and files, for ``daskscore runs show`` and
``get_metrics()``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, BinaryIO

from ..storage import is_local, url_to_fs
from .store import write_atomic

__all__ = ["RUN_FOLDER", "RunLog", "read_events", "run_summary", "run_tree"]

RUN_FOLDER = "run"  # under the step's logs folder
# on storage without appends: lines per events part (a part is written again
# whole at each event, so this bounds what one event costs)
REMOTE_PART_LINES = 100


class RunLog:
    """The events file of one process in a run folder, and its uploads."""

    def __init__(self, folder_url: str, storage_options: dict[str, Any] | None,
                 writer: str) -> None:
        self.folder_url = folder_url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.writer = writer
        self._fs, self._root = url_to_fs(self.folder_url, self.storage_options)
        self._local = is_local(self._fs)
        self._path = f"{self._root}/events/{writer}.jsonl"
        self._lines: list[str] = []  # remote: the current part, written again
        self._part = 0
        self._seq = 0

    def append(self, run_id: str, event: str, **values: Any) -> None:
        """One event of ``run_id`` (``metric``, ``tag``, ``status``, ``file``...)."""
        self._seq += 1
        line = json.dumps({"run": run_id, "event": event, "time": time.time(),
                           "writer": self.writer, "seq": self._seq, **values},
                          default=str)
        if self._local:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            with open(self._path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
            return
        if len(self._lines) >= REMOTE_PART_LINES:
            self._lines, self._part = [], self._part + 1
        self._lines.append(line)
        path = f"{self._root}/events/{self.writer}.{self._part}.jsonl"
        write_atomic(self._fs, path, ("\n".join(self._lines) + "\n").encode())

    def file_path(self, run_id: str, name: str) -> str:
        """Where ``name`` uploaded to ``run_id`` is stored (a path of the fs)."""
        return f"{self._root}/files/{run_id}/{_clean_name(name)}"

    def upload(self, run_id: str, name: str,
               source: str | os.PathLike | BinaryIO) -> str:
        """Store a local file (a path) or a binary stream as ``name`` of ``run_id``."""
        target = self.file_path(run_id, name)
        if isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"upload_file: {path} is not a file")
            if self._local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(path, target + ".tmp")
                os.replace(target + ".tmp", target)
            else:
                self._fs.put_file(path, target)
        else:
            data = source.read()
            write_atomic(self._fs, target, data.encode() if isinstance(data, str)
                         else data)
        self.append(run_id, "file", name=_clean_name(name))
        return target

    def fetch(self, run_id: str, name: str, target_dir: str) -> str:
        """A local path of what was uploaded as ``name`` (a file or a prefix:
        every file below it). Remote files are copied into ``target_dir``."""
        clean = _clean_name(name)
        base = f"{self._root}/files/{run_id}"
        path = f"{base}/{clean}"
        if not self._fs.exists(path):
            raise FileNotFoundError(
                f"{name!r} was not uploaded to run {run_id}; upload it first with "
                "run.upload_file(name, path)")
        if self._local:
            return path
        local = os.path.join(target_dir, *clean.split("/"))
        if self._fs.isdir(path):
            self._fs.get(path.rstrip("/") + "/", local, recursive=True)
        else:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            self._fs.get_file(path, local)
        return local


def _clean_name(name: str) -> str:
    parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"upload name {name!r}: give a relative name such as "
                         "'outputs/model.pkl' (no '..')")
    return "/".join(parts)


def read_events(folder_url: str, storage_options: dict[str, Any] | None = None
                ) -> list[dict[str, Any]]:
    """Every event of a run folder, merged from all writers, in time order."""
    fs, root = url_to_fs(folder_url.rstrip("/"), dict(storage_options or {}))
    try:
        names = fs.glob(f"{root}/events/*.jsonl")
    except (FileNotFoundError, OSError):
        return []
    events = []
    for name in names:
        try:
            text = fs.cat_file(name).decode("utf-8")
        except (FileNotFoundError, OSError):
            continue
        for line in text.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a process that died mid-write
    events.sort(key=lambda e: (e.get("time", 0), e.get("writer", ""), e.get("seq", 0)))
    return events


def _metric(metrics: dict[str, Any], event: dict[str, Any]) -> None:
    name, kind = event["name"], event.get("kind", "scalar")
    if kind == "row":
        table = metrics.setdefault(name, {})
        if not isinstance(table, dict):
            table = metrics[name] = {}
        for key, value in event["value"].items():
            table.setdefault(key, []).append(value)
    elif kind == "list":
        metrics[name] = list(event["value"])
    elif name in metrics:
        old = metrics[name]
        metrics[name] = [*(old if isinstance(old, list) else [old]), event["value"]]
    else:
        metrics[name] = event["value"]


def run_tree(runs: dict[str, dict[str, Any]], root: str) -> dict[str, dict[str, Any]]:
    """``root`` and the runs below it (children, grandchildren...), in order."""
    out = {}
    for run_id, run in runs.items():
        seen, current = set(), run_id
        while current and current not in seen:
            if current == root:
                out[run_id] = run
                break
            seen.add(current)
            current = runs.get(current, {}).get("parent")
    return out


def run_summary(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each run's ``metrics``, ``tags``, ``status``, ``files``, ``parent`` and
    ``name``, by run id, in order of first appearance.

    A metric logged once is its value; logged again, the list of values (in time
    order); ``log_list`` gives its list; ``log_row`` a table (column -> values).
    """
    runs: dict[str, dict[str, Any]] = {}
    for event in events:
        run = runs.setdefault(event["run"], {"metrics": {}, "tags": {}, "files": [],
                                             "status": "Running", "parent": None,
                                             "name": None})
        kind = event.get("event")
        if kind == "metric":
            _metric(run["metrics"], event)
        elif kind == "tag":
            run["tags"][event["name"]] = event.get("value")
        elif kind == "status":
            run["status"] = event["value"]
        elif kind == "file" and event["name"] not in run["files"]:
            run["files"].append(event["name"])
        elif kind == "start":
            run["parent"] = event.get("parent")
            run["name"] = event.get("name")
    return runs
