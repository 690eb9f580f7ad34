"""Committing per-mini-batch outputs exactly once, and assembling the collected file.

Layout inside a step's output folder::

    <output>/
      parallel_run_step.txt          the collected output (append_row)
      outputs/                       EntryScript().output_dir (files the script writes)
      logs/                          reports, see reports.py
      .daskscore/
        manifest.json                fingerprint of script, config, arguments, inputs
        parts/000000042.txt          what run() returned for mini-batch 42 (committed;
                                     .csv, or .arrow (Arrow IPC) for a .parquet file)
        records/000000042.json       the final record of mini-batch 42 (its tries)

A part is written to a temporary name and renamed (or uploaded whole), then its
record is written the same way. A record means "this mini-batch is done"; a part
without a record is ignored and redone. Because a part's name is its mini-batch
id, a mini-batch scored twice (worker death, resume) replaces its own part, so
every item appears exactly once in the collected file, in input order.
"""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from collections.abc import Iterable
from typing import Any

from .storage import is_local, url_to_fs

__all__ = ["PartWriter", "StateStore", "assemble_output", "encode_result"]

STATE_DIR = ".daskscore"
SCRIPT_OUTPUT_DIR = "outputs"
_COPY_CHUNK = 8 * 1024 * 1024
# block size of the collected file's upload to blob storage (see _open_output)
_UPLOAD_BLOCK = 16 * 1024 * 1024
# What a part is stored as, by the collected file's format. Parquet output is
# committed as uncompressed Arrow IPC: writing and reading it back is a copy,
# where a Parquet part would be encoded twice (in the runner and when collected).
_PART_SUFFIX = {"txt": "txt", "csv": "csv", "parquet": "arrow"}


def _join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def write_atomic(fs, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing."""
    if is_local(fs):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)  # a blob upload is all-or-nothing


def _table_from_list(result: list | tuple):
    import pandas as pd

    if result and all(isinstance(x, dict) for x in result):
        return pd.DataFrame(list(result))
    values = list(result)
    frame = pd.DataFrame({"result": values})
    if frame["result"].dtype == object:
        kinds = {type(v) for v in values}
        if len(kinds) > 1:
            frame["result"] = [str(v) for v in values]
    return frame


def is_dataframe(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas.

    A script that returns lists never pays pandas' import (~0.3 s per runner).
    """
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def encode_result(result: Any, fmt: str) -> bytes:
    """Encode what ``run()`` returned as one part of the collected output."""
    if fmt == "txt":
        if is_dataframe(result):
            if result.empty:
                return b""
            text = result.to_csv(
                sep=" ", header=False, index=False, lineterminator="\n"
            )
        else:
            text = "".join(f"{x}\n" for x in result)
        return text.encode("utf-8")
    frame = result if is_dataframe(result) else _table_from_list(result)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def part_name(index: int, fmt: str) -> str:
    """The file name of mini-batch ``index``'s part for a collected ``fmt`` file."""
    return f"{index:09d}.{_PART_SUFFIX[fmt]}"


def read_part_table(fs, path: str):
    """A committed Parquet-output part (Arrow IPC) as a ``pyarrow.Table``."""
    import pyarrow as pa

    if is_local(fs):
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).read_all()
    return pa.ipc.open_file(pa.BufferReader(fs.cat_file(path))).read_all()


class PartWriter:
    """Commits what ``run()`` returned under the mini-batch's id (runner side)."""

    def __init__(
        self, parts_url: str, fmt: str, storage_options: dict[str, Any], enabled: bool
    ) -> None:
        self.fmt = fmt
        self.enabled = enabled
        self.fs, self.parts_path = url_to_fs(parts_url, storage_options)

    def commit(self, index: int, result: Any) -> bool:
        """Write the part; return whether there is one (False for summary_only)."""
        if not self.enabled:
            return False
        data = encode_result(result, self.fmt)
        write_atomic(self.fs, _join(self.parts_path, part_name(index, self.fmt)), data)
        return True


class StateStore:
    """The ``.daskscore`` folder of a step's output: manifest, parts, records."""

    def __init__(self, output_url: str, storage_options: dict[str, Any] | None = None):
        from .storage import resolve

        url, options = resolve(output_url.rstrip("/"), storage_options)
        self.output_url = url.rstrip("/")
        self.storage_options = options
        self.fs, self.root = url_to_fs(self.output_url, self.storage_options)
        self.local = is_local(self.fs)
        self.state = _join(self.root, STATE_DIR)
        self.parts = _join(self.state, "parts")
        self.records = _join(self.state, "records")
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
        return _join(self.root, *names)

    # -- manifest ---------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(_join(self.state, "manifest.json")))
        except (FileNotFoundError, ValueError, OSError):
            return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_atomic(
            self.fs,
            _join(self.state, "manifest.json"),
            json.dumps(manifest, indent=2, sort_keys=True).encode(),
        )

    def reset(self) -> None:
        """Forget earlier parts and records (the inputs or the script changed)."""
        for folder in (self.parts, self.records):
            if self.fs.exists(folder):
                self.fs.rm(folder, recursive=True)
        self.makedirs()

    def makedirs(self) -> None:
        for folder in (self.parts, self.records):
            self.fs.makedirs(folder, exist_ok=True)

    # -- records ----------------------------------------------------------------
    def load_records(self, known: Iterable[int] = ()) -> dict[int, dict[str, Any]]:
        """Records on disk, by mini-batch id, skipping those in ``known``."""
        skip = set(known)
        out: dict[int, dict[str, Any]] = {}
        try:
            names = self.fs.ls(self.records, detail=False)
        except FileNotFoundError:
            return out
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if not base.endswith(".json") or base.startswith("."):
                continue
            index = int(base[:-5])
            if index in skip:
                continue
            try:
                out[index] = json.loads(self.fs.cat_file(name))
            except (ValueError, FileNotFoundError):
                continue
        return out

    def part_path(self, index: int, fmt: str) -> str:
        return _join(self.parts, part_name(index, fmt))


def write_record(fs, records_path: str, index: int, record: dict[str, Any]) -> None:
    """Commit the final record of one mini-batch (worker side)."""
    write_atomic(
        fs,
        _join(records_path, f"{index:09d}.json"),
        json.dumps(record, default=str).encode(),
    )


def read_record(fs, records_path: str, index: int) -> dict[str, Any] | None:
    path = _join(records_path, f"{index:09d}.json")
    try:
        return json.loads(fs.cat_file(path))
    except (FileNotFoundError, ValueError):
        return None


def assemble_output(
    store: StateStore, indices: Iterable[int], fmt: str, file_name: str
) -> tuple[str, int]:
    """Stream the committed parts, in mini-batch order, into the collected file.

    Returns the collected file's URL and the number of parts it holds. The parts
    are read one at a time; the client never holds the whole output.
    """
    fs = store.fs
    final = store.path(file_name)
    parts = [store.part_path(i, fmt) for i in sorted(indices)]
    parts = (
        [p for p in parts if fs.exists(p)]
        if not store.local
        else [p for p in parts if os.path.exists(p)]
    )
    tmp = store.path(f".{file_name}.tmp-{uuid.uuid4().hex}") if store.local else final
    store.assembly_warnings = []
    if fmt == "parquet":
        store.assembly_warnings = _assemble_parquet(fs, parts, tmp)
    elif fmt == "csv":
        _assemble_csv(fs, parts, tmp)
    else:
        with _open_output(fs, tmp) as out:
            for part in parts:
                with fs.open(part, "rb") as f:
                    while chunk := f.read(_COPY_CHUNK):
                        out.write(chunk)
    if store.local:
        os.replace(tmp, final)
    return store.url(final), len(parts)


def _open_output(fs, path: str):
    """Open the collected file for writing, streamed.

    On blob storage it is uploaded in blocks (Put Block, then Put Block List at
    close), so the client holds one block, not the file: ``_UPLOAD_BLOCK``
    unless ``storage_options`` set a ``blocksize`` (adlfs' own default, 50 MiB,
    would hold any smaller output whole). A block blob has at most 50,000
    blocks: 16 MiB blocks allow a collected file of up to 781 GiB.
    """
    if is_local(fs):
        return fs.open(path, "wb")
    block = getattr(fs, "blocksize", None)
    if not block or block == getattr(type(fs), "DEFAULT_BLOCK_SIZE", 50 * 2**20):
        block = _UPLOAD_BLOCK
    return fs.open(path, "wb", block_size=block)


def _csv_header(line: bytes) -> list[str]:
    import csv

    return next(csv.reader([line.decode("utf-8").rstrip("\r\n")]), [])


def _assemble_csv(fs, parts: list[str], target: str) -> None:
    """Concatenate CSV parts under one header: the union of their columns.

    Parts whose header is the union are copied byte for byte; the others are
    rewritten field by field into the union's column order (values kept exactly
    as written, missing columns empty).
    """
    import csv

    headers: list[bytes] = []
    for part in parts:
        with fs.open(part, "rb") as f:
            headers.append(f.readline())
    columns: list[str] = []
    for line in headers:
        for name in _csv_header(line):
            if name not in columns:
                columns.append(name)
    with _open_output(fs, target) as out:
        if not parts:
            return
        union = io.StringIO()
        csv.writer(union, lineterminator="\n").writerow(columns)
        union_line = union.getvalue().encode("utf-8")
        out.write(union_line)
        for part, line in zip(parts, headers):
            with fs.open(part, "rb") as f:
                f.readline()
                if _csv_header(line) == columns:
                    while chunk := f.read(_COPY_CHUNK):
                        out.write(chunk)
                    continue
                names = _csv_header(line)
                text = io.TextIOWrapper(f, encoding="utf-8", newline="")
                buf = io.StringIO()
                writer = csv.writer(buf, lineterminator="\n")
                for row in csv.reader(text):
                    values = dict(zip(names, row))
                    writer.writerow([values.get(c, "") for c in columns])
                    if buf.tell() > _COPY_CHUNK:
                        out.write(buf.getvalue().encode("utf-8"))
                        buf.seek(0)
                        buf.truncate()
                out.write(buf.getvalue().encode("utf-8"))


def _unified_schema(schemas: list) -> tuple[Any, list[str]]:
    """One schema for all parts; columns whose types clash become strings."""
    import pyarrow as pa

    try:
        return pa.unify_schemas(schemas, promote_options="permissive"), []
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    names: list[str] = []
    types: dict[str, list] = {}
    for schema in schemas:
        for field in schema:
            if field.name not in types:
                names.append(field.name)
                types[field.name] = []
            types[field.name].append(field.type)
    fields, clashes = [], []
    for name in names:
        try:
            merged = pa.unify_schemas(
                [pa.schema([(name, t)]) for t in types[name]],
                promote_options="permissive",
            ).field(name)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            merged = pa.field(name, pa.large_string())
            kinds = sorted({str(t) for t in types[name]})
            clashes.append(
                f"column {name!r} has clashing types across mini-batches "
                f"({' vs '.join(kinds)}); written as strings"
            )
        fields.append(merged)
    return pa.schema(fields), clashes


def _cast_column(column, target):
    """Cast one column to the unified type (to strings when types clashed)."""
    import pyarrow as pa

    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        values = [None if v is None else str(v) for v in column.to_pylist()]
        return pa.array(values, type=target)


def _leaf_paths(schema) -> list[str]:
    """The Parquet leaf column paths of an Arrow schema ("a.b", "l.list.element")."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(schema.empty_table(), buf)
    meta = pq.ParquetFile(io.BytesIO(buf.getvalue())).metadata
    return [meta.schema.column(i).path for i in range(meta.num_columns)]


def _dictionary_columns(table) -> list[str]:
    """The columns of the collected file worth dictionary encoding.

    Judged on the first part: a column whose values repeat (at most half of them
    distinct) is dictionary encoded, one of unique values (ids, scores) is not,
    which saves building a dictionary that Parquet would throw away anyway.
    Nested columns keep dictionary encoding on all their leaves.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    chosen: list[str] = []
    nested: list[str] = []
    for field in table.schema:
        if pa.types.is_nested(field.type):
            nested.append(field.name)
            continue
        column = table[field.name]
        present = len(column) - column.null_count
        try:
            distinct = pc.count_distinct(column).as_py()
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            distinct = 0  # a type without a hash kernel: keep the default
        if present and distinct <= present / 2:
            chosen.append(field.name)
    if nested:
        chosen += [
            path
            for path in _leaf_paths(table.schema)
            if path.split(".", 1)[0] in nested
        ]
    return chosen


def _assemble_parquet(fs, parts: list[str], target: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = []
    for part in parts:
        with fs.open(part, "rb") as f:
            schemas.append(pa.ipc.open_file(f).schema)
    warnings: list[str] = []
    if schemas:
        schema, warnings = _unified_schema(schemas)
    else:
        schema = pa.schema([("result", pa.string())])
    with _open_output(fs, target) as out:
        writer = None
        for part in parts:
            table = read_part_table(fs, part)
            if table.num_rows == 0:
                continue
            columns = []
            for field in schema:
                if field.name in table.column_names:
                    columns.append(_cast_column(table[field.name], field.type))
                else:
                    columns.append(pa.nulls(table.num_rows, field.type))
            table = pa.Table.from_arrays(columns, schema=schema)
            if writer is None:
                writer = pq.ParquetWriter(
                    out, schema, use_dictionary=_dictionary_columns(table)
                )
            writer.write_table(table)
        if writer is None:  # nothing to write: an empty but valid file
            writer = pq.ParquetWriter(out, schema)
        writer.close()
    return warnings
