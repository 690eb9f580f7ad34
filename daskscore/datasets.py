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
from .io.partitions import plan_partitions
from .io.text import (
    pandas_csv_options,
    plan_text,
    splittable_encoding,
    text_split_check,
)
from .runner.reader import Reader
from .storage import list_file_runs, list_inputs, local_folder, resolve, url_to_fs

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


class FileDataset(_DatasetBase):
    """A list of files; ``run()`` gets local paths, ``mini_batch_size`` at a time."""

    input_kind = "file"

    def __init__(
        self,
        path: str | os.PathLike | Sequence[str | os.PathLike],
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(path, str | os.PathLike | list | tuple):
            raise DatasetError(
                f"path={path!r} must be a glob, a folder, a file or a list of paths"
            )
        # as given (what a workspace registers) and as resolved (what runs)
        self.given_path, self.given_storage_options = path, dict(storage_options or {})
        self.path, self.storage_options = _resolved(path, storage_options)

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

    def plan(self, mini_batch_size: int | str | None) -> tuple[FilePlan, str]:
        """Split into mini-batches of ``mini_batch_size`` files, with a fingerprint.

        The plan is a sequence of :class:`MiniBatchSpec` made when asked for
        (:class:`~daskscore.io.files.FilePlan`): the listing is streamed and
        held compactly, so a million files plan in a few seconds.
        """
        size = (
            DEFAULT_FILE_MINI_BATCH
            if mini_batch_size is None
            else parse_file_count(mini_batch_size)
        )
        runs = list_file_runs(
            self.path,
            self.storage_options,
            stat_files=_settings.get("plan.stat-files"),
        )
        return plan_file_runs(runs, size)

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


class TabularDataset(_DatasetBase):
    """Rows from CSV, Parquet or JSON-lines files, or a dask DataFrame.

    ``run()`` receives a pandas DataFrame of about ``mini_batch_size`` bytes; a
    mini-batch never spans two files.
    """

    input_kind = "tabular"

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
                    frames.append(
                        pd.read_csv(f, **pandas_csv_options(self.read_options))
                    )
                else:
                    encoding = self.read_options.get("encoding") or "utf-8"
                    frames.append(pd.read_json(f, lines=True, encoding=encoding))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

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
    """A file mini-batch as local paths (a task of to_dask_bag)."""
    return _read(spec, source, _scratch_dir())


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
    ) -> FileDataset:
        """A FileDataset from a glob, a folder (recursive), a file or a list of them."""
        storage_options = _options_of(path, storage_options)
        if isinstance(path, list | tuple):
            return FileDataset([_resolve_local(p) for p in path], storage_options)
        return FileDataset(_resolve_local(path), storage_options)


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
    ) -> TabularDataset:
        """Rows of CSV/TSV files; big files are split by byte ranges at line ends.

        Parameters
        ----------
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
