"""daskscore's own reader of ``MLTable`` files: the ``mltable`` package is not needed.

The subset read (anything else is a :class:`~daskscore.errors.UsageError` naming it):

- ``paths``: ``file``, ``folder`` (every file under it, recursively, sorted),
  ``pattern`` (a glob, ``**`` recursive), relative to the MLTable file's folder;
- ``read_delimited`` (``delimiter``, ``header``: ``all_files_same_headers`` /
  ``from_first_file`` / ``no_header`` / ``all_files_different_headers``,
  ``encoding``, ``empty_as_string``, ``include_path_column``), ``read_parquet``,
  ``read_json_lines`` (``encoding``, ``include_path_column``);
- ``extract_columns_from_partition_format`` (``{column}`` parts of the files' paths
  become columns, and the table's :attr:`MLTable.partition_keys`);
- ``drop_columns``, ``keep_columns``, ``take``, ``skip``.

Used by the parallel jobs' ``mltable`` inputs (:mod:`.parallel`) and by
``mltable.load()`` in scripts (:mod:`.mltable_module`). Imports only the storage
layer (pandas when reading), so a runner process can load it.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from ..errors import UsageError
from ..storage import resolve, url_to_fs

__all__ = ["MLTable", "load_mltable", "SUPPORTED_TRANSFORMATIONS"]

READERS = ("read_delimited", "read_parquet", "read_json_lines")
SUPPORTED_TRANSFORMATIONS = (*READERS, "extract_columns_from_partition_format",
                             "drop_columns", "keep_columns", "take", "skip")
_HEADERS = ("all_files_same_headers", "from_first_file", "no_header",
            "all_files_different_headers")
_TOP_KEYS = {"paths", "transformations", "type", "$schema", "metadata", "traits"}
_OPTIONS = {
    "read_delimited": {"delimiter", "header", "encoding", "empty_as_string",
                       "include_path_column", "support_multi_line"},
    "read_parquet": {"include_path_column"},
    "read_json_lines": {"encoding", "include_path_column", "invalid_lines"},
}


def _partition_regex(fmt: str, where: str) -> tuple[re.Pattern, list[str]]:
    """``{Store}/{Brand}/*.csv`` -> a regex with one group per column, the columns."""
    keys: list[str] = []
    out = ""
    for part in re.split(r"(\{[^}]*\}|\*\*/?|\*)", fmt.strip().lstrip("/")):
        if part.startswith("{"):
            name = part[1:-1]
            if ":" in name or not name.isidentifier():
                raise UsageError(f"{where}: partition format {fmt!r}: {part} is not "
                                 "supported; use plain {column} parts")
            keys.append(name)
            out += f"(?P<{name}>[^/]+)"
        elif part.startswith("**"):
            out += "(?:.*/)?" if part.endswith("/") else ".*"
        elif part == "*":
            out += "[^/]*"
        else:
            out += re.escape(part)
    return re.compile(out), keys


class MLTable:
    """An ``MLTable`` file: where its files are and how to read them."""

    def __init__(self, data: dict[str, Any], base: str,
                 storage_options: dict[str, Any] | None = None,
                 where: str = "MLTable") -> None:
        self.base = base.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.where = where
        self.data = data
        for key in sorted(set(data) - _TOP_KEYS):
            raise UsageError(f"{where}: unknown key {key!r} (known: "
                             f"{', '.join(sorted(_TOP_KEYS))})")
        self.transformations = self._transformations(data.get("transformations"))
        readers = [t for t in self.transformations if t[0] in READERS]
        if len(readers) != 1:
            raise UsageError(f"{where}: transformations: give exactly one of "
                             f"{', '.join(READERS)} (found {len(readers)})")
        self.reader, self.read_options = readers[0]
        self.partition_format: str | None = None
        self.partition_keys: list[str] = []
        for name, opts in self.transformations:
            if name == "extract_columns_from_partition_format":
                fmt = opts.get("partition_format") if isinstance(opts, dict) else opts
                if not isinstance(fmt, str):
                    raise UsageError(f"{where}: extract_columns_from_partition_format: "
                                     "give the format, e.g. '{Store}/{Brand}/*.csv'")
                self.partition_format = fmt
                self.partition_keys = _partition_regex(fmt, where)[1]
        self.paths = self._paths(data.get("paths"))

    # -- the file itself -------------------------------------------------------------
    def _transformations(self, raw: Any) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        items = raw if isinstance(raw, list) else [raw] if raw else []
        for item in items:
            if isinstance(item, str):
                item = {item: {}}
            if not isinstance(item, dict) or len(item) != 1:
                raise UsageError(f"{self.where}: transformations: each entry is one "
                                 f"transformation (a mapping of one key), not {item!r}")
            (name, opts), = item.items()
            if name not in SUPPORTED_TRANSFORMATIONS:
                raise UsageError(
                    f"{self.where}: transformation {name!r} is not supported by "
                    f"daskscore's MLTable reader (supported: "
                    f"{', '.join(SUPPORTED_TRANSFORMATIONS)}); transform the "
                    "DataFrame in the script instead")
            if name in _OPTIONS:
                opts = dict(opts or {})
                for key in sorted(set(opts) - _OPTIONS[name]):
                    known = ", ".join(sorted(_OPTIONS[name]))
                    raise UsageError(f"{self.where}: {name}.{key} is not supported "
                                     f"(supported: {known})")
            out.append((name, opts))
        return out

    def _paths(self, raw: Any) -> list[tuple[str, str]]:
        if not isinstance(raw, list) or not raw:
            raise UsageError(f"{self.where}: paths: a list of file:, folder: or "
                             "pattern: entries")
        out = []
        for entry in raw:
            if not isinstance(entry, dict) or len(entry) != 1 or \
                    next(iter(entry)) not in ("file", "folder", "pattern"):
                raise UsageError(f"{self.where}: paths: {entry!r}: use file:, folder: "
                                 "or pattern:")
            (kind, value), = entry.items()
            out.append((kind, str(value)))
        return out

    def _full(self, path: str) -> str:
        if "://" in path or os.path.isabs(path):
            return path
        return f"{self.base}/{path.removeprefix('./')}"

    def files(self) -> list[tuple[str, str]]:
        """``(path, path relative to its entry's root)`` of every file, in order."""
        fs, _ = url_to_fs(self.base or ".", self.storage_options)
        protocol = self.base.split("://")[0] + "://" if "://" in self.base else ""
        found: list[tuple[str, str]] = []
        for kind, value in self.paths:
            full = self._full(value)
            _, root = url_to_fs(full, self.storage_options)
            if kind == "file":
                names = [root]
                top = os.path.dirname(root)
            elif kind == "folder":
                names = sorted(p for p in fs.find(root)
                               if not os.path.basename(p).startswith((".", "_"))
                               and os.path.basename(p) != "MLTable")
                top = root
            else:
                names = sorted(fs.glob(root))
                top = root.split("*")[0].rsplit("/", 1)[0]
            if not names:
                raise UsageError(f"{self.where}: paths: {kind}: {value}: no files "
                                 f"found under {full}")
            for name in names:
                if kind == "file" and not fs.exists(name):
                    raise UsageError(f"{self.where}: paths: file: {value}: no such "
                                     f"file ({full})")
                rel = os.path.relpath(name, top).replace(os.sep, "/")
                local = name if not protocol or name.startswith(protocol) else \
                    protocol + name
                found.append((local if protocol else name, rel))
        return found

    # -- reading ---------------------------------------------------------------------
    def _read_file(self, path: str, first: bool, names: list[str] | None):
        import pandas as pd

        opts = self.read_options
        fs, fpath = url_to_fs(path, self.storage_options)
        with fs.open(fpath, "rb") as f:
            if self.reader == "read_parquet":
                frame = pd.read_parquet(f)
            elif self.reader == "read_json_lines":
                frame = pd.read_json(f, lines=True,
                                     encoding=python_encoding(opts.get("encoding")))
            else:
                header = opts.get("header", "all_files_same_headers")
                if header not in _HEADERS:
                    raise UsageError(f"{self.where}: read_delimited.header: {header!r}"
                                     f"; use one of {', '.join(_HEADERS)}")
                has_header = header != "no_header" and (
                    header != "from_first_file" or first)
                frame = pd.read_csv(
                    f, sep=opts.get("delimiter", ","),
                    header=0 if has_header else None,
                    encoding=python_encoding(opts.get("encoding")),
                    na_filter=not opts.get("empty_as_string", False),
                )
                if not has_header:
                    frame.columns = names if names and len(names) == frame.shape[1] \
                        else [f"Column{i + 1}" for i in range(frame.shape[1])]
        if opts.get("include_path_column"):
            frame["Path"] = path
        return frame

    def to_pandas_dataframe(self):
        """The table: every file read, the transformations applied in order."""
        import pandas as pd

        regex = (_partition_regex(self.partition_format, self.where)[0]
                 if self.partition_format else None)
        frames = []
        names: list[str] | None = None
        for i, (path, rel) in enumerate(self.files()):
            frame = self._read_file(path, i == 0, names)
            names = names or list(frame.columns)
            if regex is not None:
                match = regex.fullmatch(rel) or regex.search(rel)
                if match is None:
                    raise UsageError(f"{self.where}: extract_columns_from_partition_"
                                     f"format: {rel} does not match "
                                     f"{self.partition_format!r}")
                for key, value in match.groupdict().items():
                    frame[key] = value
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        for name, opts in self.transformations:
            table = _apply(table, name, opts, self.where)
        return table.reset_index(drop=True)

    def is_plain(self) -> bool:
        """Only a reader with default options: the files can be read as they are."""
        return (len(self.transformations) == 1
                and not self.read_options.get("include_path_column")
                and not self.read_options.get("empty_as_string")
                and self.read_options.get("header", "all_files_same_headers")
                == "all_files_same_headers")


def python_encoding(name: Any) -> str:
    text = str(name or "utf8").lower().replace("-", "")
    return {"utf8": "utf-8", "ascii": "ascii", "latin1": "latin-1",
            "iso88591": "latin-1", "utf16": "utf-16", "utf8bom": "utf-8-sig",
            "windows1252": "cp1252"}.get(text, str(name))


def _columns(opts: Any, name: str, where: str) -> list[str]:
    cols = [opts] if isinstance(opts, str) else opts
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
        raise UsageError(f"{where}: {name}: a column name or a list of them")
    return cols


def _apply(table, name: str, opts: Any, where: str):
    if name == "drop_columns":
        cols = _columns(opts, name, where)
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise UsageError(f"{where}: drop_columns: no column(s) {missing} "
                             f"(columns: {list(table.columns)})")
        return table.drop(columns=cols)
    if name == "keep_columns":
        cols = _columns(opts, name, where)
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise UsageError(f"{where}: keep_columns: no column(s) {missing} "
                             f"(columns: {list(table.columns)})")
        return table[cols]
    if name in ("take", "skip"):
        count = opts.get("count") if isinstance(opts, dict) else opts
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UsageError(f"{where}: {name}: a number of rows (0 or more)")
        return table.head(count) if name == "take" else table.iloc[count:]
    return table


def load_mltable(uri: str, storage_options: dict[str, Any] | None = None,
                 where: str | None = None) -> MLTable:
    """The MLTable in folder ``uri`` (or the ``MLTable`` file itself)."""
    text = os.fspath(uri).rstrip("/")
    if text.startswith("file:") and "://" not in text:
        text = text[len("file:"):]
    # blob URLs of every form as abfs://container/path with their own options
    text, storage_options = resolve(text, storage_options or {})
    fs, path = url_to_fs(text, storage_options)
    if fs.isdir(path):
        file_url, base = f"{text}/MLTable", text
    else:
        file_url, base = text, text.rsplit("/", 1)[0] if "/" in text else "."
    where = where or file_url
    _, file_path = url_to_fs(file_url, storage_options or {})
    try:
        raw = fs.cat_file(file_path)
    except FileNotFoundError:
        raise UsageError(f"{where}: no MLTable file at {file_url}; an mltable "
                         "input is a folder holding an MLTable file") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{where}: MLTable file {file_url} is not valid YAML: "
                         f"{getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: MLTable file {file_url} must be a YAML mapping")
    if "://" not in base:
        base = os.path.abspath(base)
    return MLTable(data, base, storage_options,
                   where if where != file_url else f"MLTable {file_url}")
