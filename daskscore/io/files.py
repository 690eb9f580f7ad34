"""FileDataset inputs: lists of files, ``mini_batch_size`` files at a time.

``run()`` gets local paths. Local files are handed over as they are; blobs are
downloaded first (several at once, keeping their relative paths) into the
mini-batch's own scratch folder, and the next mini-batch's blobs can be fetched
ahead while the current one is scored.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

from .._protocol import MiniBatchSpec
from ..storage import FileRun, download, is_local, url_to_fs
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


class FilePlan(Sequence[MiniBatchSpec]):
    """The mini-batches of a FileDataset, each made only when asked for.

    The listing is held compactly: per run of files sharing a folder, the
    folder once and the names as one string (:class:`PackedNames`, about
    the names' characters and 4 bytes a file instead of a Python string per path
    and a tuple per mini-batch). ``plan[i]``
    is the :class:`MiniBatchSpec` of mini-batch ``i``, ``len(plan)`` how many
    there are; :meth:`renumbered` numbers them from another first index.
    """

    def __init__(
        self,
        prefixes: list[str],
        names: list[Any],
        starts: array,
        count: int,
        size: int,
        first: int = 0,
        source: int = 0,
        listed: float = 0.0,
    ) -> None:
        self._prefixes, self._names, self._starts = prefixes, names, starts
        self.files, self.size = count, size
        self.first, self.source = first, source
        self.listed = listed

    def __len__(self) -> int:
        return -(-self.files // self.size)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        paths = self.paths(i * self.size, min((i + 1) * self.size, self.files))
        return MiniBatchSpec(
            index=self.first + i,
            kind="files",
            paths=paths,
            items=len(paths),
            source=self.source,
            listed=self.listed,
        )

    def paths(self, start: int, stop: int) -> tuple[str, ...]:
        """The listed paths ``start`` to ``stop`` (positions in sorted order)."""
        out: list[str] = []
        run = bisect.bisect_right(self._starts, start) - 1
        while start < stop:
            offset = self._starts[run]
            end = min(stop, self._starts[run + 1])
            names = self._names[run][start - offset : end - offset]
            prefix = self._prefixes[run]
            out.extend(prefix + name for name in names)
            start, run = end, run + 1
        return tuple(out)

    def known_items(self) -> int:
        """The number of files: every mini-batch's item count is known."""
        return self.files

    def renumbered(self, first: int, source: int) -> FilePlan:
        """The same plan with mini-batch ids from ``first``, of input ``source``."""
        return FilePlan(
            self._prefixes,
            self._names,
            self._starts,
            self.files,
            self.size,
            first,
            source,
            self.listed,
        )


def plan_file_runs(
    runs: Iterable[FileRun], size: int, listed: float = 0.0
) -> tuple[FilePlan, str]:
    """:func:`plan_files` for a streamed listing (:func:`~daskscore.storage.
    list_file_runs`): the same mini-batches and the same fingerprint, without
    ever holding a path string per file. ``listed``: the runs come from
    walking a local folder, listed from that time on (see
    :attr:`MiniBatchSpec.listed`)."""
    h = hashlib.sha256()
    for e in ("files", size):  # as fingerprint(entries, "files", size)
        h.update(repr(e).encode())
    prefixes: list[str] = []
    names: list[Any] = []
    starts = array("q", [0])
    for prefix, run, stats in runs:
        _hash_run(h, prefix, run, stats)
        names.append(_compact(run))
        prefixes.append(prefix)
        starts.append(starts[-1] + len(run))
    plan = FilePlan(prefixes, names, starts, starts[-1], size, listed=listed)
    return plan, h.hexdigest()[:32]


# a folder of fewer names stays a tuple (a string each costs ~50 bytes more
# than its characters, which only matters for big folders)
_PACKED_NAMES_FROM = 4096


class PackedNames:
    """A folder's names as one string and the offsets between them: about a
    byte a character and 4 bytes a name (a Python string per name costs ~50
    bytes more). Any name Python can hold (non-UTF-8 bytes as surrogates) is
    kept as it is; ``names[a:b]`` is the list of those names."""

    __slots__ = ("_text", "_ends")

    def __init__(self, names: list[str]) -> None:
        self._text = "".join(names)
        self._ends = array("I", accumulate(map(len, names), initial=0))

    def __len__(self) -> int:
        return len(self._ends) - 1

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, slice):
            if not 0 <= i < len(self):
                raise IndexError(i)
            return self._text[self._ends[i] : self._ends[i + 1]]
        start, stop, _ = i.indices(len(self))
        text, ends = self._text, self._ends
        return [text[ends[j] : ends[j + 1]] for j in range(start, stop)]

    def __getstate__(self) -> tuple[str, array]:
        return self._text, self._ends

    def __setstate__(self, state: tuple[str, array]) -> None:
        self._text, self._ends = state


def _compact(run: list[str]) -> tuple[str, ...] | PackedNames:
    """One folder's names: :class:`PackedNames` for a big folder, a tuple for a
    small one."""
    if len(run) < _PACKED_NAMES_FROM:
        return tuple(run)
    return PackedNames(run)


def fingerprint_runs(runs: Iterable[FileRun], size: int) -> str:
    """The fingerprint :func:`plan_file_runs` gives the same listing, alone."""
    h = hashlib.sha256()
    for e in ("files", size):
        h.update(repr(e).encode())
    for prefix, run, stats in runs:
        _hash_run(h, prefix, run, stats)
    return h.hexdigest()[:32]


def _hash_run(h: Any, prefix: str, run: list[str], stats: Any) -> None:
    if isinstance(stats, str):  # one time for a whole local folder
        text = f"{prefix}\0{stats}\n" + "\n".join(run) + "\n"
    else:  # as fingerprint(entries, ...): path, size and time of each file
        text = "".join(
            f"{prefix}{name}\0{fsize}\0{mtime}\n"
            for name, (fsize, mtime) in zip(run, stats)
        )
    h.update(text.encode("utf-8", "surrogateescape"))


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
