"""The runner's reader: a :class:`MiniBatchSpec` in, what ``run()`` receives out.

Format-specific work lives in :mod:`daskscore.io`; this class adds what a
long-lived runner keeps between mini-batches: each input's storage and read
options, the last Parquet or partition table read (the next mini-batch often
slices the same one), CSV headers, prefetched reads and downloaded files.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from .._protocol import MiniBatchSpec
from ..io.files import (
    download_folder,
    download_mini_batch,
    missing_problem,
    plain_local,
    remote_paths,
    split_local,
)
from ..io.parquet import read_row_groups
from ..io.partitions import read_partition_table, select_partition
from ..io.text import (
    TextReadError,
    first_line,
    parse_problem,
    parse_text,
    read_text_bytes,
)
from ..storage import changed_after

# Mini-batches whose inputs are read ahead from blob storage (see Reader.prefetch)
_PREFETCHED_KINDS = ("files", "csv", "jsonl", "parquet")


class Reader:
    """Turns a MiniBatchSpec into what run() receives.

    ``sources[i]`` holds the storage and read options of the step's input ``i``
    (a mini-batch's ``spec.source``): inputs on different accounts, or CSV files
    with different separators, are each read with their own.
    """

    def __init__(self, sources: list[dict[str, Any]], scratch_dir: str) -> None:
        self.sources = sources or [{"storage_options": {}, "read_options": {}}]
        self.scratch_dir = scratch_dir
        self._headers: dict[tuple[int, str], bytes] = {}
        self._table_key: tuple | None = None
        self._table = None
        self.downloaded: list[str] = []
        self.read_details = ""
        self._prefetched: dict[int, Any] = {}
        self._pool = None

    def _storage(self, spec: MiniBatchSpec) -> dict[str, Any]:
        return self.sources[spec.source]["storage_options"]

    def _read_options(self, spec: MiniBatchSpec) -> dict[str, Any]:
        return self.sources[spec.source]["read_options"]

    def read(self, spec: MiniBatchSpec) -> tuple[Any, int, str | None]:
        """Return (mini_batch, items, read_problem)."""
        if spec.kind == "error":
            return None, spec.items or 1, spec.error or "input could not be read"
        if spec.kind == "files":
            return self._files(spec)
        if spec.kind == "parquet":
            return self._parquet(spec)
        if spec.kind == "partition":
            return _fresh_index(*self._partition(spec))
        return _fresh_index(*self._text(spec))

    # -- prefetch ---------------------------------------------------------------------
    def prefetch(self, spec: MiniBatchSpec) -> None:
        """Start reading the next mini-batch from blob storage in the background.

        Called with the next mini-batch of a pack while the current one is
        scored, so that ``run()`` seldom waits for the network: a FileDataset
        mini-batch's blobs are downloaded, a tabular one's bytes (CSV, JSON
        lines) or row groups (Parquet) fetched. Local files need nothing.
        """
        if spec.index in self._prefetched or spec.kind not in _PREFETCHED_KINDS:
            return
        if spec.kind == "parquet" and spec.start > 0:
            return  # a later slice of row groups the mini-batch before reads
        remote = remote_paths(spec.paths, self._storage(spec))
        if not remote:
            return
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="daskscore-prefetch")
        if spec.kind == "files":
            job = (
                download_mini_batch,
                self.scratch_dir,
                spec.index,
                remote,
                self._storage(spec),
            )
        elif spec.kind == "parquet":
            job = (read_row_groups, spec, self._storage(spec))
        else:
            job = (self._text_bytes, spec)
        self._prefetched[spec.index] = self._pool.submit(*job)

    def _ahead(self, spec: MiniBatchSpec):
        """The prefetched read of ``spec`` (a Future), or None.

        Reads prefetched for earlier mini-batches that were never asked for (a
        pack that stopped early) are dropped.
        """
        for index in [i for i in self._prefetched if i < spec.index]:
            stale = self._prefetched.pop(index)
            stale.cancel()
            # blobs downloaded for it go once the download is over
            folder = download_folder(self.scratch_dir, index)
            stale.add_done_callback(
                lambda _f, folder=folder: shutil.rmtree(folder, ignore_errors=True)
            )
        return self._prefetched.pop(spec.index, None)

    # -- formats ----------------------------------------------------------------------
    def _files(self, spec: MiniBatchSpec) -> tuple[list[str], int, str | None]:
        storage = self._storage(spec)
        if (
            spec.listed
            and all(plain_local(p, storage) for p in spec.paths)
            and not _folders_changed(spec.paths, spec.listed)
        ):
            # found by walking a local folder, none of whose entries changed
            # since: no stat each (one removed while run() runs is looked for
            # when run() raises, Runner.run_one)
            return list(spec.paths), len(spec.paths), None
        good, missing, remote = split_local(spec.paths, storage)
        if remote:
            # blobs keep their relative paths below the mini-batch's folder, so
            # a/0.png and b/0.png stay apart; several download at once
            ahead = self._ahead(spec)
            if ahead is not None:
                local, errors = ahead.result()
            else:
                local, errors = download_mini_batch(
                    self.scratch_dir, spec.index, remote, self._storage(spec)
                )
            for url, target in zip(remote, local):
                if target is None:
                    missing.append(url)
                else:
                    self.downloaded.append(target)
                    good.append(target)
            # why each blob failed, for logs/user/error/
            self.read_details = "\n".join(errors.values())
        return good, len(spec.paths), missing_problem(missing)

    def cleanup(self) -> None:
        """Remove the files downloaded for the mini-batch just scored."""
        for path in self.downloaded:
            try:
                os.remove(path)
            except OSError:
                pass
        self.downloaded.clear()

    def _parquet(self, spec: MiniBatchSpec):
        key = (spec.source, spec.paths[0], spec.row_groups)
        ahead = self._ahead(spec)
        try:
            if key != self._table_key:
                self._table, self._table_key = None, None
                table = (
                    ahead.result()
                    if ahead
                    else read_row_groups(spec, self._storage(spec))
                )
                self._table, self._table_key = table, key
            table = self._table.slice(spec.start, spec.stop - spec.start)
            frame = table.to_pandas()
        except Exception as exc:  # noqa: BLE001 - corrupt data fails its mini-batch
            return None, spec.items or 1, f"{type(exc).__name__}: {exc}"
        return _fresh_index(frame, len(frame), None)

    def _partition(self, spec: MiniBatchSpec):
        """The rows of one partition_keys combination, from every file."""
        key = ("partition", spec.source, spec.paths)
        try:
            if key != self._table_key:
                self._table, self._table_key = None, None
                self._table = read_partition_table(
                    spec, self._storage(spec), self._read_options(spec)
                )
                self._table_key = key
            frame = select_partition(self._table, spec.key_values)
        except Exception as exc:  # noqa: BLE001 - unreadable data fails its mini-batch
            return None, spec.items or 1, f"{type(exc).__name__}: {exc}"
        return frame, len(frame), None

    def _text_bytes(self, spec: MiniBatchSpec) -> bytes:
        return read_text_bytes(
            spec, self._storage(spec), self._read_options(spec), self._header(spec)
        )

    def _text(self, spec: MiniBatchSpec):
        """A CSV/JSON-lines range; one that cannot be read fails with its rows
        counted (all of them, not 1) and says why and where."""
        ahead = self._ahead(spec)
        read_options = self._read_options(spec)
        try:
            data = ahead.result() if ahead else self._text_bytes(spec)
        except TextReadError as exc:
            return None, exc.rows, str(exc)
        except Exception as exc:  # noqa: BLE001 - unreadable data fails its mini-batch
            return None, spec.items or 1, f"{type(exc).__name__}: {exc}"
        try:
            frame = parse_text(data, spec.kind, read_options)
        except Exception as exc:  # noqa: BLE001 - unparseable data fails its mini-batch
            problem = parse_problem(exc, data, spec, read_options)
            return None, problem.rows, str(problem)
        return frame, len(frame), None

    def _header(self, spec: MiniBatchSpec):
        """A cached ``first_line`` for the files of this mini-batch's input."""

        def header(fs, fpath: str) -> bytes:
            key = (spec.source, fpath)
            if key not in self._headers:
                self._headers[key] = first_line(fs, fpath)
            return self._headers[key]

        return header


def _fresh_index(frame: Any, items: int, problem: str | None):
    """A table mini-batch has a fresh ``0..n-1`` index, as in the reference
    system (scripts join their predictions onto it)."""
    if frame is not None and not _is_fresh(frame.index):
        frame = frame.reset_index(drop=True)
    return frame, items, problem


def _is_fresh(index: Any) -> bool:
    start = getattr(index, "start", None)
    return (type(index).__name__ == "RangeIndex" and start == 0
            and getattr(index, "step", None) == 1)


def _folders_changed(paths: tuple[str, ...], since: float) -> bool:
    """Whether a folder of ``paths`` had an entry added, removed or renamed
    after ``since`` (its change time is later): a file listed then may be gone.
    One ``stat`` per folder."""
    for folder in {p.rpartition("/")[0] or "/" for p in paths}:
        try:
            if changed_after(os.stat(folder).st_ctime_ns, since):
                return True
        except OSError:
            return True
    return False
