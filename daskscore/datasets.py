"""Inputs: FileDataset and TabularDataset, and how they split into mini-batches.

A dataset is lazy: nothing is listed or read until a step plans it. Planning turns
a dataset into a list of :class:`MiniBatchSpec`, small picklable descriptions of
one ``run()`` call's input (a list of files, or one file's byte range / row
groups). Specs are numbered in input order; the number is the mini-batch id, used
for retries, exactly-once commits, ordering of the collected output and resume.
"""

from __future__ import annotations

import codecs
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from . import _settings
from ._protocol import MiniBatchSpec
from .config import (
    DEFAULT_FILE_MINI_BATCH,
    DEFAULT_TABULAR_MINI_BATCH,
    parse_file_count,
    parse_size,
)
from .errors import ConfigError, DatasetError
from .io._common import fingerprint
from .io.files import FilePlan, fingerprint_runs, plan_file_runs
from .io.frame import plan_frame
from .io.parquet import plan_parquet
from .io.partitions import (
    partition_format_keys,
    plan_file_partitions,
    plan_partitions,
)
from .io.text import (
    column_type_name,
    pandas_csv_options,
    plan_text,
    splittable_encoding,
    text_split_check,
    typed_frame,
)
from .runner.reader import Reader
from .storage import (
    changed_after,
    files_clock,
    list_file_runs,
    list_inputs,
    local_folder,
    resolve,
    url_to_fs,
)

logger = logging.getLogger("daskscore")

__all__ = [
    "DATASET_FORMATS",
    "Dataset",
    "FileDataset",
    "MiniBatchSpec",
    "TabularDataset",
    "dataset_from_format",
]


class _DatasetBase:
    """What every dataset has: a source, options, and an optional input name."""

    input_name: str | None = None
    input_kind: str = ""
    # set on datasets that come from a workspace registry
    name: str | None = None
    version: int | None = None
    description: str | None = None

    def register(
        self,
        workspace: Any,
        name: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        create_new_version: bool = False,
    ) -> Any:
        """Register this dataset in ``workspace`` as ``name``; returns it versioned."""
        return workspace.register_dataset(
            self,
            name,
            description=description,
            tags=tags,
            create_new_version=create_new_version,
        )

    def as_named_input(self, name: str) -> _DatasetBase:
        """This dataset under ``name`` (reachable as ``EntryScript().inputs[name]``)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.input_name = name
        return clone

    def as_mount(self, path_on_compute: str | None = None) -> _DatasetBase:
        """Accepted for Azure ML v1 code: the dataset itself (runners read inputs
        where they are; blobs are downloaded per mini-batch)."""
        return self

    def as_download(self, path_on_compute: str | None = None) -> _DatasetBase:
        """Accepted for Azure ML v1 code: the dataset itself (see :meth:`as_mount`)."""
        return self


class FileDataset(_DatasetBase):
    """A list of files; ``run()`` gets local paths, ``mini_batch_size`` at a time."""

    input_kind = "file"

    def __init__(
        self,
        path: str | os.PathLike | Sequence[str | os.PathLike],
        storage_options: dict[str, Any] | None = None,
        partition_format: str | None = None,
    ) -> None:
        if not isinstance(path, str | os.PathLike | list | tuple):
            raise DatasetError(
                f"path={path!r} must be a glob, a folder, a file or a list of paths"
            )
        # as given (what a workspace registers) and as resolved (what runs)
        self.given_path, self.given_storage_options = path, dict(storage_options or {})
        self.path, self.storage_options = _resolved(path, storage_options)
        # '/{user}/{season}/{genres}.wav': key values from the files' paths
        self.partition_format = partition_format
        self.partition_keys: list[str] = (
            partition_format_keys(partition_format) if partition_format else []
        )

    def __repr__(self) -> str:
        return f"FileDataset(path={self.path!r})"

    def to_path(self) -> list[str]:
        """The files of this dataset, in the order mini-batches take them."""
        return [p for p, _, _ in list_inputs(self.path, self.storage_options)]

    def reading(self) -> dict[str, Any]:
        """How a runner reads this input: its storage and read options."""
        return {"storage_options": self.storage_options, "read_options": {}}

    def to_dask_bag(self, mini_batch_size: int | str | None = None):
        """The mini-batches a step's ``run()`` would get, as a lazy dask Bag.

        One partition per mini-batch of ``mini_batch_size`` files (the step's
        default, 10, when omitted): the local paths of its files, in sorted
        order; blobs are downloaded to the worker's scratch folder when the
        partition is computed.
        """
        import dask.bag as db
        from dask.base import tokenize

        specs, print_ = self.plan(mini_batch_size)
        source = self.reading()
        name = f"daskscore-files-{tokenize(print_, specs.size, self.path)}"
        dsk = {(name, s.index): (_read_files, s, source) for s in specs}
        return db.Bag(dsk, name, len(specs))

    def take(self, count: int) -> FileDataset:
        """A dataset of this one's first ``count`` files."""
        return FileDataset(self.to_path()[: int(count)], self.storage_options or None)

    def download(
        self, target_path: str | os.PathLike | None = None, overwrite: bool = False
    ) -> list[str]:
        """Copy the files into the local folder ``target_path`` (default: a new
        temporary folder), keeping their layout below the dataset's root; returns
        the local paths."""
        import tempfile

        target = os.fspath(target_path) if target_path else tempfile.mkdtemp()
        root = _glob_root(self.path)
        out = []
        for path in self.to_path():
            rel = path[len(root):] if path.startswith(root) else os.path.basename(path)
            local = os.path.join(target, rel.replace("\\", "/").lstrip("/"))
            if overwrite or not os.path.exists(local):
                os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
                fs, fpath = url_to_fs(path, self.storage_options)
                fs.get_file(fpath, local)
            out.append(local)
        return out

    def plan(
        self,
        mini_batch_size: int | str | None,
        partition_keys: Sequence[str] | None = None,
    ) -> tuple[FilePlan | list[MiniBatchSpec], str]:
        """Split into mini-batches of ``mini_batch_size`` files, with a fingerprint.

        The plan is a sequence of :class:`MiniBatchSpec` made when asked for
        (:class:`~daskscore.io.files.FilePlan`): the listing is streamed and
        held compactly, so a million files plan in a few seconds. With
        ``partition_keys`` (keys of the dataset's ``partition_format``), every
        distinct combination of their values is one mini-batch instead.
        """
        if partition_keys:
            if not self.partition_format:
                raise DatasetError(
                    f"partition_keys {list(partition_keys)} needs a FileDataset made "
                    "with partition_format=..., e.g. Dataset.File.from_files(path, "
                    "partition_format='/{user}/{genres}.wav')"
                )
            return plan_file_partitions(
                list_inputs(self.path, self.storage_options),
                _glob_root(self.path),
                self.partition_format,
                list(partition_keys),
            )
        size = (
            DEFAULT_FILE_MINI_BATCH
            if mini_batch_size is None
            else parse_file_count(mini_batch_size)
        )
        # a walked local folder's files are known to exist (unless their folder
        # changed after this): no stat each when read
        walked = local_folder(self.path, self.storage_options) is not None
        listed = files_clock() if walked else 0.0
        runs = list_file_runs(
            self.path,
            self.storage_options,
            stat_files=_settings.get("plan.stat-files"),
        )
        return plan_file_runs(runs, size, listed=listed)

    def content_fingerprint(self, mini_batch_size: int | str | None) -> str:
        """A fingerprint of every file's size and time, where :meth:`plan`'s
        leaves them out (a local folder without ``daskscore.plan.stat-files``:
        one stat per file, ~3-4 us each), else "" (the plan's covers them)."""
        if _settings.get("plan.stat-files") or not local_folder(
            self.path, self.storage_options
        ):
            return ""
        size = (
            DEFAULT_FILE_MINI_BATCH
            if mini_batch_size is None
            else parse_file_count(mini_batch_size)
        )
        runs = list_file_runs(self.path, self.storage_options, stat_files=True)
        return fingerprint_runs(runs, size)

    def changed_since(self, since: float) -> bool:
        """Whether a file of this local folder changed after ``since`` (a time
        from :func:`~daskscore.storage.files_clock`): its ``ctime``, which every
        write, rename or ``touch`` moves and no one can set back, is later; for
        a link, the link's own too (retargeted), and that of each linked folder
        on the way. False where :meth:`plan`'s fingerprint already holds each
        file's size and time (blob storage, globs, lists,
        ``daskscore.plan.stat-files``). One stat per file, up to the first
        changed one; a file gone meanwhile counts as a change.

        The file times come from the clock of the machine that holds the files
        (an NFS server): it must keep time with this one's.
        """
        root = local_folder(self.path, self.storage_options)
        if _settings.get("plan.stat-files") or not root:
            return False
        folders: set[str] = set()
        try:
            for prefix, names, _stats in list_file_runs(
                self.path, self.storage_options, stat_files=False
            ):
                folder = prefix.rstrip("/")
                while folder not in folders and len(folder) >= len(root):
                    folders.add(folder)  # a linked folder retargeted
                    if os.path.islink(folder) and _moved(folder, since):
                        return True
                    folder = os.path.dirname(folder)
                if any(_moved(prefix + name, since) for name in names):
                    return True
        except OSError:  # gone meanwhile
            return True
        return False


def _moved(path: str, since: float) -> bool:
    """Whether ``path`` (or, for a link, what it points to) changed after
    ``since``."""
    st = os.lstat(path)
    if changed_after(st.st_ctime_ns, since):
        return True
    return stat.S_ISLNK(st.st_mode) and changed_after(os.stat(path).st_ctime_ns, since)


class TabularDataset(_DatasetBase):
    """Rows from CSV, Parquet or JSON-lines files, or a dask DataFrame.

    ``run()`` receives a pandas DataFrame of about ``mini_batch_size`` bytes; a
    mini-batch never spans two files.
    """

    input_kind = "tabular"
    # the keys partition_by() wrote the dataset by (informative: a step's
    # ParallelRunConfig(partition_keys=...) decides how it is split)
    partition_keys: list[str] = []

    def __init__(
        self,
        fmt: str,
        path: Any = None,
        storage_options: dict[str, Any] | None = None,
        read_options: dict[str, Any] | None = None,
        frame: Any = None,
    ) -> None:
        self.format = fmt
        # as given (what a workspace registers) and as resolved (what runs)
        self.given_path, self.given_storage_options = path, dict(storage_options or {})
        self.path, self.storage_options = _resolved(path, storage_options)
        self.read_options = dict(read_options or {})
        self.frame = frame

    def __repr__(self) -> str:
        if self.frame is not None:
            return (
                f"TabularDataset(dask DataFrame, {self.frame.npartitions} partitions)"
            )
        return f"TabularDataset({self.format}, path={self.path!r})"

    def to_pandas_dataframe(self):
        """Read the whole dataset into one pandas DataFrame (small inputs only)."""
        import pandas as pd

        if self.frame is not None:
            return self.frame.compute()
        frames = []
        for path, _, _ in list_inputs(self.path, self.storage_options, True):
            fs, fpath = url_to_fs(path, self.storage_options)
            with fs.open(fpath, "rb") as f:
                if self.format == "parquet":
                    frames.append(pd.read_parquet(f))
                elif self.format == "csv":
                    frames.append(typed_frame(
                        pd.read_csv(f, **pandas_csv_options(self.read_options)),
                        self.read_options))
                else:
                    encoding = self.read_options.get("encoding") or "utf-8"
                    frames.append(pd.read_json(f, lines=True, encoding=encoding))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def take(self, count: int) -> TabularDataset:
        """A dataset of this one's first ``count`` rows (read now, kept in memory)."""
        import dask.dataframe as dd

        head = self.to_pandas_dataframe().head(int(count))
        return TabularDataset("frame", frame=dd.from_pandas(head, npartitions=1))

    def partition_by(
        self,
        partition_keys: Sequence[str],
        target: Any,
        name: str | None = None,
        show_progress: bool = False,
    ) -> TabularDataset:
        """Write the rows as Parquet, one folder per combination of the
        ``partition_keys`` columns' values (``<target>/<v1>/<v2>/part-0.parquet``,
        the key columns kept), and return that dataset, with ``partition_keys``
        set. ``target`` is a folder, a URL, a ``datastore.path(...)`` or a
        ``(datastore, path)`` pair; with ``name`` the new dataset is registered
        in the datastore's workspace."""
        keys = list(partition_keys or [])
        frame = self.to_pandas_dataframe()
        missing = [k for k in keys if k not in frame.columns]
        if not keys or missing:
            raise DatasetError(
                f"partition_by({keys}): {missing or 'no keys'} not among the "
                f"columns {list(frame.columns)}; give one or more column names"
            )
        root, options = _target_of(target)
        fs, base = url_to_fs(root, options)
        for values, rows in frame.groupby(keys, sort=True, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            folder = "/".join([base.rstrip("/"), *(str(v) for v in values)])
            fs.makedirs(folder, exist_ok=True)
            with fs.open(f"{folder}/part-0.parquet", "wb") as f:
                rows.reset_index(drop=True).to_parquet(f, index=False)
        if show_progress:
            print(f"partition_by({keys}): wrote {root}")
        out = TabularDataset("parquet", root, options)
        out.partition_keys = keys
        datastore = target[0] if isinstance(target, tuple) else getattr(
            target, "datastore", None)
        if name and datastore is not None:
            return out.register(datastore.workspace, name, create_new_version=True)
        return out

    def reading(self) -> dict[str, Any]:
        """How a runner reads this input: storage and read options, and format."""
        return {
            "storage_options": self.storage_options,
            "read_options": {**self.read_options, "format": self.format},
        }

    def to_dask_dataframe(self, mini_batch_size: int | str | None = None):
        """The dataset as a dask DataFrame.

        With ``mini_batch_size``, one partition per mini-batch a step's ``run()``
        would get (byte-sized, never spanning two files: Parquet split by row
        groups, CSV and JSON lines by byte ranges), read on the workers by the
        runner's own reader. Without it, dask's own readers
        (``dd.read_parquet``, ``dd.read_csv``, ``dd.read_json``).
        """
        import dask.dataframe as dd

        if self.frame is not None:
            return self.frame
        if mini_batch_size is not None:
            specs, _ = self.plan(mini_batch_size)
            if not specs:
                raise DatasetError(f"{self!r} has no rows to read")
            return dd.from_map(
                _read_rows, specs, source=self.reading(), label="daskscore-read"
            )
        paths = [p for p, _, _ in list_inputs(self.path, self.storage_options, True)]
        if self.format == "parquet":
            return dd.read_parquet(paths, storage_options=self.storage_options)
        if self.format == "csv":
            return dd.read_csv(
                paths,
                storage_options=self.storage_options,
                **pandas_csv_options(self.read_options),
            )
        return dd.read_json(
            paths,
            lines=True,
            storage_options=self.storage_options,
            blocksize=None,
            encoding=self.read_options.get("encoding") or "utf-8",
        )

    def plan(
        self,
        mini_batch_size: int | str | None,
        partition_keys: Sequence[str] | None = None,
    ) -> tuple[list[MiniBatchSpec], str]:
        """Split into mini-batches of about ``mini_batch_size`` bytes; a fingerprint.

        With ``partition_keys``, every distinct combination of those columns' values
        is one mini-batch instead.
        """
        if partition_keys:
            if self.frame is not None:
                raise DatasetError(
                    "partition_keys needs a file-based tabular dataset, not a "
                    "dask DataFrame; group the DataFrame by the keys instead"
                )
            return plan_partitions(
                self.format,
                list_inputs(self.path, self.storage_options, skip_private=True),
                list(partition_keys),
                self.storage_options,
                self.read_options,
            )
        size = (
            DEFAULT_TABULAR_MINI_BATCH
            if mini_batch_size is None
            else parse_size(mini_batch_size)
        )
        if self.frame is not None:
            return plan_frame(self.frame)
        entries = list_inputs(self.path, self.storage_options, skip_private=True)
        specs: list[MiniBatchSpec] = []
        read_whole: list[str] = []
        for path, file_size, _ in entries:
            if self.format == "parquet":
                specs.extend(plan_parquet(path, size, self.storage_options))
            else:
                specs.extend(self._plan_text(path, file_size, size, read_whole))
        if read_whole:
            _warn_read_whole(read_whole)
        specs = [replace(s, index=i) for i, s in enumerate(specs)]
        # files read whole change the plan: a resumed run must see the same one
        extra = [read_whole] if read_whole else []
        return specs, fingerprint(
            entries, self.format, size, sorted(self.read_options.items()), *extra
        )

    def _plan_text(
        self, path: str, file_size: int | None, size: int, read_whole: list[str]
    ) -> list[MiniBatchSpec]:
        """One CSV/JSON-lines file's byte ranges; a file that must be read whole
        (a quoted line break seen at planning) is added to ``read_whole``."""
        split = not self.read_options.get(
            "support_multi_line"
        ) and splittable_encoding(self.read_options)
        if split and text_split_check(
            self.format,
            path,
            file_size,
            size,
            self.storage_options,
            self.read_options,
            _settings.get("csv.quote-scan"),
        ):
            split = False
            read_whole.append(path)
        return plan_text(self.format, path, file_size, size, split=split)


def _warn_read_whole(paths: list[str]) -> None:
    """One warning for the CSV files that planning reads whole."""
    more = len(paths) - 3
    shown = ", ".join(paths[:3]) + (f" and {more} more" if more > 0 else "")
    logger.warning(
        "%d CSV file%s hold%s quoted values with line breaks, so %s read whole, "
        "one mini-batch per file, whatever mini_batch_size says: %s; say so with "
        "support_multi_line=True (CLI --csv-multi-line)",
        len(paths),
        "" if len(paths) == 1 else "s",
        "s" if len(paths) == 1 else "",
        "it is" if len(paths) == 1 else "they are",
        shown,
    )


def _scratch_dir() -> str:
    """A new folder for downloaded blobs (made on the first download), in the
    Dask worker's own space, which the worker removes when it closes."""
    import tempfile
    import uuid

    try:
        from distributed import get_worker

        base = get_worker().local_directory
    except (ImportError, ValueError):
        base = tempfile.gettempdir()
    return os.path.join(base, f"daskscore-read-{uuid.uuid4().hex[:12]}")


def _read(spec: MiniBatchSpec, source: dict[str, Any], scratch: str) -> Any:
    """One planned mini-batch, read as the runner reads it; a read error raises."""
    mini_batch, _, problem = Reader([source], scratch).read(replace(spec, source=0))
    if problem is not None:
        raise DatasetError(
            f"mini-batch {spec.index} ({spec.describe()}) cannot be read: {problem}"
        )
    return mini_batch


def _read_rows(spec: MiniBatchSpec, source: dict[str, Any]) -> Any:
    """A tabular mini-batch as a pandas DataFrame (a task of to_dask_dataframe)."""
    return _read(spec, source, "")


def _read_files(spec: MiniBatchSpec, source: dict[str, Any]) -> list[str]:
    """A file mini-batch as local paths (a task of to_dask_bag).

    The bag's paths go to any code, maybe long after planning, not to a
    ``run()`` whose exception would reveal a missing file: each is looked for
    (``listed`` off), so a file gone since planning is a read error here."""
    return _read(replace(spec, listed=0.0), source, _scratch_dir())


def _resolved(path: Any, storage_options: dict[str, Any] | None):
    """Canonical URLs and self-contained storage options, resolved once here.

    Azure URLs (``az://``, ``abfss://``, ``https://<account>.blob...``) become
    ``abfs://`` with options naming the account and credential (environment
    variables folded in), so every worker reaches the same place.
    """
    options = dict(storage_options or {})
    if path is None:
        return None, options
    try:
        if isinstance(path, list | tuple):
            pairs = [resolve(os.fspath(p), options) for p in path]
            return [u for u, _ in pairs], (pairs[0][1] if pairs else options)
        return resolve(os.fspath(path), options)
    except ValueError as exc:
        raise DatasetError(f"input {path!r}: {exc}") from exc


def _glob_root(path: Any) -> str:
    """The folder a path's files are relative to: the part before any glob
    character (a list: its first entry's)."""
    if isinstance(path, list | tuple):
        folders = {_glob_root(p) if any(c in os.fspath(p) for c in "*?[")
                   else os.fspath(p).rsplit("/", 1)[0] for p in path}
        common = os.path.commonprefix(sorted(folders))
        return common if common in folders else common.rsplit("/", 1)[0]
    text = os.fspath(path)
    cut = min((text.find(c) for c in "*?[" if c in text), default=-1)
    if cut < 0:
        return text.rstrip("/")
    return text[:cut].rsplit("/", 1)[0]


def _target_of(target: Any) -> tuple[str, dict[str, Any]]:
    """A write target (a folder, URL, datastore path or ``(datastore, path)``) as
    a path or URL and its storage options."""
    if isinstance(target, tuple) and len(target) == 2 and hasattr(target[0], "path"):
        target = target[0].path(target[1])
    options = dict(getattr(target, "storage_options", None) or {})
    return _resolve_local(os.fspath(target)), options


def _options_of(path: Any, storage_options: dict[str, Any] | None):
    """Storage options given, else those a path object carries (datastore paths)."""
    if storage_options is not None:
        return storage_options
    if isinstance(path, list | tuple):
        for item in path:
            found = getattr(item, "storage_options", None)
            if found:
                return dict(found)
        return None
    found = getattr(path, "storage_options", None)
    return dict(found) if found else None


def _resolve_local(path: str | os.PathLike) -> str:
    """Expand ``~`` in local paths; URLs pass through."""
    text = os.fspath(path)
    return text if "://" in text else os.path.expanduser(text)


class _FileFactory:
    """``Dataset.File``: constructors of file datasets."""

    @staticmethod
    def from_files(
        path: str | os.PathLike | Sequence[str | os.PathLike],
        storage_options: dict[str, Any] | None = None,
        partition_format: str | None = None,
    ) -> FileDataset:
        """A FileDataset from a glob, a folder (recursive), a file or a list of them.

        ``partition_format`` (e.g. ``"/{user}/{season}/{genres}.wav"``, matched
        against the end of each file's path; ``*`` matches within one part)
        names keys parsed from each file's path; a step
        with ``ParallelRunConfig(partition_keys=[...])`` of those keys gives
        ``run()`` one mini-batch per combination of their values.
        """
        storage_options = _options_of(path, storage_options)
        if isinstance(path, list | tuple):
            return FileDataset([_resolve_local(p) for p in path], storage_options,
                               partition_format)
        return FileDataset(_resolve_local(path), storage_options, partition_format)


class _TabularFactory:
    """``Dataset.Tabular``: constructors of tabular datasets."""

    @staticmethod
    def from_delimited_files(
        path: Any,
        separator: str = ",",
        header: bool = True,
        storage_options: dict[str, Any] | None = None,
        support_multi_line: bool = False,
        encoding: str | None = None,
        infer_column_types: bool = True,
        set_column_types: dict[str, Any] | None = None,
        empty_as_string: bool = False,
        validate: bool = True,
        include_path: bool = False,
    ) -> TabularDataset:
        """Rows of CSV/TSV files; big files are split by byte ranges at line ends.

        Parameters
        ----------
        infer_column_types
            As in the reference system (the default): a column whose values all
            read as dates or datetimes is ``datetime64``; numbers are numbers.
        set_column_types
            Column -> type, over the inferred one: ``"int"``, ``"float"``,
            ``"str"``, ``"bool"``, ``"datetime"`` (or ``int``, ``float``, ``str``,
            ``bool``, or a v1 ``DataType`` such as ``DataType.to_datetime(fmt)``).
        empty_as_string
            Empty values of text columns are ``""`` instead of missing.
        validate, include_path
            Accepted for the reference system's signature (no effect).
        support_multi_line
            Whether quoted values may contain line breaks. By default files are
            split into byte ranges at line ends (like ``support_multi_line=False``
            in the system we re-implement), which is only right where no quoted
            value holds a line break. With ``True`` a file is never split: each
            file is one mini-batch, read whole by one worker, whatever
            ``mini_batch_size`` says. With
            ``False``, a file whose first bytes (``daskscore.csv.quote-scan``)
            show a quoted line break is read whole too, with a warning; a byte
            range found later to start or end inside a quoted value fails as
            ``READ_ERROR`` (its rows counted) rather than giving garbage rows.
        encoding
            The files' text encoding (default utf-8), e.g. ``"latin-1"``. Files
            are split at ``\\n`` bytes, so an encoding that is not
            ASCII-compatible (utf-16) reads each file whole.
        """
        storage_options = _options_of(path, storage_options)
        read_options: dict[str, Any] = {"separator": separator, "header": header}
        if support_multi_line:
            read_options["support_multi_line"] = True
        if encoding:
            read_options["encoding"] = _encoding(encoding)
        read_options.update(_column_options(infer_column_types, set_column_types,
                                            empty_as_string))
        return TabularDataset("csv", _norm(path), storage_options, read_options)

    @staticmethod
    def from_parquet_files(
        path: Any, storage_options: dict[str, Any] | None = None
    ) -> TabularDataset:
        """Rows of Parquet files; big files are split by row groups (and rows)."""
        storage_options = _options_of(path, storage_options)
        return TabularDataset("parquet", _norm(path), storage_options)

    @staticmethod
    def from_json_lines_files(
        path: Any,
        storage_options: dict[str, Any] | None = None,
        encoding: str | None = None,
    ) -> TabularDataset:
        """Rows of JSON-lines files; big files are split by byte ranges at line ends.

        ``encoding``: the files' text encoding (default utf-8).
        """
        storage_options = _options_of(path, storage_options)
        read_options = {"encoding": _encoding(encoding)} if encoding else None
        return TabularDataset("jsonl", _norm(path), storage_options, read_options)

    @staticmethod
    def from_dask_dataframe(ddf: Any) -> TabularDataset:
        """An existing dask DataFrame: each partition is one mini-batch."""
        if not hasattr(ddf, "npartitions") or not hasattr(ddf, "to_delayed"):
            raise DatasetError(
                "from_dask_dataframe() needs a dask DataFrame, got "
                f"{type(ddf).__name__}"
            )
        return TabularDataset("frame", frame=ddf)


def _column_options(infer: bool, types: dict[str, Any] | None,
                    empty_as_string: bool) -> dict[str, Any]:
    """The read options of a CSV input's column typing (only those not default,
    so that older fingerprints stay)."""
    out: dict[str, Any] = {}
    if not infer:
        out["infer_column_types"] = False
    if types:
        try:
            out["set_column_types"] = {str(c): column_type_name(k)
                                       for c, k in dict(types).items()}
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
    if empty_as_string:
        out["empty_as_string"] = True
    return out


def _encoding(name: Any) -> str:
    """A text encoding Python knows, as given; DatasetError otherwise."""
    try:
        codecs.lookup(name)
    except (LookupError, TypeError):
        raise DatasetError(
            f"encoding={name!r} is not a text encoding Python knows; give one such "
            "as 'utf-8', 'latin-1' or 'cp1252'"
        ) from None
    return name


def _norm(path: Any) -> Any:
    if isinstance(path, list | tuple):
        return [_resolve_local(p) for p in path]
    return _resolve_local(path)


class Dataset:
    """Entry point for inputs: ``Dataset.File.from_files``, ``Dataset.Tabular.*``.

    Registered datasets (``Dataset.get_by_name``) come with the workspace.
    """

    File = _FileFactory
    Tabular = _TabularFactory

    @staticmethod
    def get_by_name(workspace: Any, name: str, version: int | str = "latest") -> Any:
        """The dataset registered as ``name`` in ``workspace`` (a version or latest)."""
        return workspace.get_dataset(name, version)


# the format names a dataset is recorded under: "files" in a workspace registry,
# "file" in a step's settings (both a FileDataset), and the tabular formats
DATASET_FORMATS = ("files", "file", "csv", "parquet", "jsonl")


def dataset_from_format(
    fmt: str,
    path: Any,
    storage_options: dict[str, Any] | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> FileDataset | TabularDataset:
    """The dataset of a recorded format name: what settings, registries and the
    command line rebuild datasets with.

    Parameters
    ----------
    fmt
        ``"files"`` or ``"file"`` (a FileDataset), ``"csv"``, ``"parquet"`` or
        ``"jsonl"``.
    path, storage_options
        As the ``Dataset.*`` constructors take them.
    read_options
        For ``"csv"``: ``separator`` (default ``","``), ``header`` (default
        True), ``support_multi_line`` (default False) and ``encoding`` (default
        utf-8); for ``"jsonl"``: ``encoding``; other formats take none.
    """
    read = dict(read_options or {})
    if fmt in ("files", "file"):
        return Dataset.File.from_files(path, storage_options=storage_options)
    if fmt == "csv":
        return Dataset.Tabular.from_delimited_files(
            path,
            separator=read.get("separator", ","),
            header=read.get("header", True),
            storage_options=storage_options,
            support_multi_line=bool(read.get("support_multi_line", False)),
            encoding=read.get("encoding"),
        )
    if fmt == "parquet":
        return Dataset.Tabular.from_parquet_files(
            path, storage_options=storage_options
        )
    if fmt == "jsonl":
        return Dataset.Tabular.from_json_lines_files(
            path, storage_options=storage_options, encoding=read.get("encoding")
        )
    raise ConfigError("format", fmt, " / ".join(repr(f) for f in DATASET_FORMATS))
