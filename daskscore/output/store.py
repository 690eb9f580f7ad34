"""The commit store of a step's output folder: atomic writes, manifest, records.

Layout inside a step's output folder::

    <output>/
      parallel_run_step.txt          the collected output (append_row)
      outputs/                       EntryScript().output_dir (files the script writes)
      logs/                          reports, see reports.py
      .daskscore/
        manifest.json                fingerprint of script, config, arguments, inputs
        parts/seg-<token>.txt        what run() returned, appended by one runner
                                     process: each mini-batch's part is a segment
                                     whose place its record keeps (see parts.py;
                                     .csv, or .arrow (Arrow IPC) for a .parquet
                                     file); on blob storage parts/000000042.txt,
                                     a file per mini-batch
        records/000000040-000000049.pack
                                     the commit log of the pack of mini-batches
                                     40-49: a start mark and the final record
                                     (its tries) of each (see commitlog.py); on
                                     blob storage 000000042.json.started and
                                     000000042.json, a file each
        lock.json                    the running job's lock (see lock.py)

A part is appended to its runner's segment file (on blob storage: uploaded
whole under its mini-batch id), then its record is appended to its pack's log
(on blob storage: uploaded, a file each). A record means "this mini-batch is
done" and names its part; a part without a record is ignored and redone. The
collected file takes, for each recorded mini-batch, the part its record names,
so a mini-batch scored twice (worker death, resume) still appears exactly once,
in input order.

On the local disk those temporary names are ``.tmp-<hex>`` (and
``.<file>.tmp-<hex>`` for the collected file); a write that fails removes its
own, and :meth:`StateStore.remove_temp_files` removes what an attempt that was
killed left, called by a job that holds the folder's lock before it writes.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from .._protocol import (
    LOGS_DIR,
    MANIFEST_FILE,
    PARTS_DIR,
    RECORDS_DIR,
    STATE_DIR,
    part_name,
    record_index,
    record_name,
)
from ..storage import is_local, resolve, url_to_fs

__all__ = [
    "StateStore",
    "is_temp_name",
    "join",
    "pack_name",
    "pack_range",
    "read_bytes",
    "read_json",
    "read_pack",
    "read_record",
    "remove_file",
    "remove_quietly",
    "started_mark_name",
    "temp_name",
    "write_atomic",
    "write_record",
]

# what write_atomic and the collected file are written to before their rename:
# ".tmp-<hex>" and ".<file name>.tmp-<hex>"
_TEMP_NAME = re.compile(r"^\.(?:.+\.)?tmp-[0-9a-f]{32}$")
# folders of an output where daskscore writes through a temporary name
# (outputs/, the script's own files, is never touched)
_TEMP_FOLDERS = (
    "",
    STATE_DIR,
    f"{STATE_DIR}/{PARTS_DIR}",
    f"{STATE_DIR}/{RECORDS_DIR}",
    LOGS_DIR,
    f"{LOGS_DIR}/user/error",
)


PACK_SUFFIX = ".pack"
STARTED, RECORD = b"S", b"R"


def pack_name(first: int, last: int) -> str:
    """The file name of the log of the pack of mini-batches ``first..last``."""
    return f"{first:09d}-{last:09d}{PACK_SUFFIX}"


def pack_range(name: str) -> tuple[int, int] | None:
    """``(first, last)`` of a pack log's file name, or None for anything else."""
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(PACK_SUFFIX) or base.startswith("."):
        return None
    first, _, last = base[: -len(PACK_SUFFIX)].partition("-")
    if not (first.isdigit() and last.isdigit()):
        return None
    return int(first), int(last)


def started_mark_name(index: int) -> str:
    """The file name of a mini-batch's start mark on blob storage."""
    return f"{record_name(index)}.started"


def read_pack(data: bytes) -> tuple[dict[int, dict], dict[int, dict]]:
    """The records and the start marks of a pack log's bytes, by mini-batch id.

    Lines that do not parse (torn by a crash) are skipped. Of several marks of
    one mini-batch, the last one is kept: it carries the tries lost before it.
    """
    records: dict[int, dict] = {}
    starts: dict[int, dict] = {}
    for line in data.split(b"\n"):
        kind, body = line[:1], line[2:]
        if kind not in (STARTED, RECORD):
            continue
        try:
            entry = json.loads(body)
            index = int(entry["index"])
        except (ValueError, KeyError, TypeError):
            continue
        (records if kind == RECORD else starts)[index] = entry
    return records, starts


def latest_marks(marks: Iterable[dict[int, dict]]) -> dict[int, dict]:
    """Of several ``{id: start mark}``, the latest mark of each mini-batch (it
    carries the tries lost before it)."""
    found: dict[int, dict] = {}
    for some in marks:
        for index, mark in some.items():
            known = found.get(index)
            if known is None or (mark.get("started_at") or 0) >= (
                known.get("started_at") or 0
            ):
                found[index] = mark
    return found


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def temp_name(name: str = "") -> str:
    """A unique temporary name, ``.tmp-<hex>`` or ``.<name>.tmp-<hex>``."""
    return f".{name}.tmp-{uuid.uuid4().hex}" if name else f".tmp-{uuid.uuid4().hex}"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of :func:`temp_name`'s."""
    return bool(_TEMP_NAME.match(name))


def remove_quietly(path: str) -> None:
    """Remove a local file if it is there (the cleanup of a failed write)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def write_atomic(fs, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing.

    On the local disk the data goes to a temporary name first, renamed once
    complete; a write that fails (a full disk) removes its temporary file.
    """
    if is_local(fs):
        folder = os.path.dirname(path)
        tmp = os.path.join(folder, temp_name())
        try:
            try:
                f = open(tmp, "wb")
            except FileNotFoundError:  # the folder first (once per folder)
                os.makedirs(folder, exist_ok=True)
                f = open(tmp, "wb")
            with f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            remove_quietly(tmp)
            raise
    else:
        fs.pipe_file(path, data)  # a blob upload is all-or-nothing


class StateStore:
    """The ``.daskscore`` folder of a step's output: manifest, parts, records."""

    def __init__(self, output_url: str, storage_options: dict[str, Any] | None = None):
        url, options = resolve(output_url.rstrip("/"), storage_options)
        self.output_url = url.rstrip("/")
        self.storage_options = options
        self.fs, self.root = url_to_fs(self.output_url, self.storage_options)
        self.local = is_local(self.fs)
        self.state = join(self.root, STATE_DIR)
        self.parts = join(self.state, PARTS_DIR)
        self.records = join(self.state, RECORDS_DIR)
        self.assembly_warnings: list[str] = []

    # -- URLs handed to workers -------------------------------------------------
    def url(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)

    @property
    def parts_url(self) -> str:
        return self.url(self.parts)

    @property
    def records_url(self) -> str:
        return self.url(self.records)

    def path(self, *names: str) -> str:
        return join(self.root, *names)

    # -- manifest ---------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(join(self.state, MANIFEST_FILE)))
        except (FileNotFoundError, ValueError, OSError):
            return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_atomic(
            self.fs,
            join(self.state, MANIFEST_FILE),
            json.dumps(manifest, indent=2, sort_keys=True).encode(),
        )

    def reset(self) -> None:
        """Forget earlier parts and records (the inputs or the script changed)."""
        for folder in (self.parts, self.records):
            if self.fs.exists(folder):
                self.fs.rm(folder, recursive=True)
        self.makedirs()

    def remove_temp_files(self) -> list[str]:
        """Remove what earlier attempts left under temporary names; return them.

        Only call it while holding the output's lock (:mod:`.lock`) and before
        the job's own writers start: then no live writer owns any of them. On
        blob storage nothing is written under a temporary name.
        """
        removed: list[str] = []
        if not self.local:
            return removed
        for sub in _TEMP_FOLDERS:
            folder = os.path.join(self.root, sub) if sub else self.root
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
                    remove_quietly(entry.path)
                    removed.append(entry.path)
        return removed

    def makedirs(self) -> None:
        for folder in (self.parts, self.records):
            self.fs.makedirs(folder, exist_ok=True)

    # -- records ----------------------------------------------------------------
    def load_records(self, known: Iterable[int] = ()) -> dict[int, dict[str, Any]]:
        """Records on disk, by mini-batch id, skipping those in ``known``."""
        return dict(self.iter_records(known))

    def iter_records(
        self, known: Any = (), interrupted: dict[int, dict] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(id, record)`` of the records on disk, one at a time, skipping the
        ids ``in known`` (a set, or a job's record table). A mini-batch scored
        twice (a worker that went on after Dask gave it up) may come twice: its
        records are alike, either will do.

        ``interrupted``, a dict, is filled once the iteration ends with the
        start marks of the mini-batches started and never recorded (an earlier
        run stopped, or a worker died, while scoring them), by id.
        """
        skip = known if hasattr(known, "__contains__") else set(known)
        recorded: set[int] = set()
        starts: list[dict[int, dict]] = []
        for name in self._record_names():
            span = pack_range(name)
            if span is not None:
                if interrupted is None and all(
                    i in skip for i in range(span[0], span[1] + 1)
                ):
                    continue  # known already: not read again
                records, marks = read_pack(read_bytes(self.fs, name) or b"")
                if interrupted is not None:
                    recorded.update(records)
                    starts.append(marks)
                for index, record in records.items():
                    if index not in skip:
                        yield index, record
                continue
            index = record_index(name)
            if index is None:
                if interrupted is not None and name.endswith(".json.started"):
                    starts.append(_started_mark(self.fs, name))
                continue
            recorded.add(index)
            if index in skip:
                continue
            try:
                yield index, json.loads(self.fs.cat_file(name))
            except (ValueError, FileNotFoundError):
                continue
        if interrupted is not None:
            found = latest_marks(starts)
            interrupted.update((i, m) for i, m in found.items() if i not in recorded)

    def started(self, indices: Iterable[int]) -> list[int]:
        """Of ``indices``, the mini-batches started and not recorded (being
        scored, or being scored when their worker died)."""
        wanted = set(indices)
        found: set[int] = set()
        recorded: set[int] = set()
        for name in self._record_names():
            span = pack_range(name)
            if span is not None:
                if any(span[0] <= i <= span[1] for i in wanted):
                    records, marks = read_pack(read_bytes(self.fs, name) or b"")
                    recorded.update(records)
                    found.update(i for i in marks if i in wanted)
            elif name.endswith(".json.started"):
                index = record_index(name[: -len(".started")])
                record = name[: -len(".started")]
                if index in wanted and read_bytes(self.fs, record) is None:
                    found.add(index)
        return sorted(found - recorded)

    def drop_records(self, indices: set[int]) -> None:
        """Forget the records (and start marks) of these mini-batches, so that
        they are scored again (``rerun_failed``)."""
        for name in list(self._record_names()):
            span = pack_range(name)
            if span is not None:
                if not any(span[0] <= i <= span[1] for i in indices):
                    continue
                data = read_bytes(self.fs, name) or b""
                kept = [
                    line for line in data.split(b"\n")
                    if line and _line_index(line) not in indices
                ]
                if len(kept) != data.count(b"\n"):
                    write_atomic(self.fs, name, b"".join(b"\n" + k for k in kept))
            elif record_index(name) in indices:
                remove_file(self.fs, name)

    def _record_names(self) -> Iterator[str]:
        """The files of the records folder (local: streamed by ``os.scandir``)."""
        try:
            if self.local:
                with os.scandir(self.records) as it:
                    for entry in it:
                        yield entry.path
                return
            names = self.fs.ls(self.records, detail=False)
        except FileNotFoundError:
            return
        yield from names

    def part_path(self, index: int, fmt: str) -> str:
        return join(self.parts, part_name(index, fmt))


def write_record(fs, records_path: str, index: int, record: dict[str, Any]) -> None:
    """Commit the final record of one mini-batch (worker side)."""
    write_atomic(
        fs,
        join(records_path, record_name(index)),
        json.dumps(record, default=str).encode(),
    )


def read_bytes(fs, path: str) -> bytes | None:
    """A file's bytes, or None when there is none (local files without fsspec:
    a worker asks this for every mini-batch)."""
    try:
        if is_local(fs):
            with open(path, "rb") as f:
                return f.read()
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def remove_file(fs, path: str) -> None:
    """Remove a file if it is there."""
    try:
        if is_local(fs):
            os.unlink(path)
        else:
            fs.rm_file(path)
    except FileNotFoundError:
        pass


def read_json(fs, path: str) -> dict[str, Any] | None:
    """A small JSON object file (a record, a start mark), or None when it is
    not there or not whole."""
    data = read_bytes(fs, path)
    try:
        value = None if data is None else json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _started_mark(fs, name: str) -> dict[int, dict]:
    """``{id: mark}`` of a start-mark file (blob storage), or {}."""
    index = record_index(name[: -len(".started")])
    mark = read_json(fs, name)
    return {index: mark} if index is not None and mark is not None else {}


def _line_index(line: bytes) -> int | None:
    """The mini-batch id of one line of a pack log (None if it does not parse)."""
    try:
        return int(json.loads(line[2:])["index"])
    except (ValueError, KeyError, TypeError):
        return None


def read_record(fs, records_path: str, index: int) -> dict[str, Any] | None:
    return read_json(fs, join(records_path, record_name(index)))


