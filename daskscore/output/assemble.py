"""The collected file: the committed parts streamed, in input order, into one file.

``.txt`` parts are concatenated (neighbouring segments of one segment file in
one copy); ``.csv`` parts keep one header (the union of their columns); Arrow
parts become one Parquet file with a unified schema. The client reads one part
at a time and never holds the whole output.
"""

from __future__ import annotations

import io
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from .._protocol import PART_SUFFIX
from ..errors import JobError
from ..storage import DiskFullError, is_disk_full, is_local
from .store import StateStore, join, remove_quietly, temp_name

__all__ = ["assemble_output"]

_COPY_CHUNK = 8 * 1024 * 1024
# block size of the collected file's upload to blob storage (see _open_output)
_UPLOAD_BLOCK = 16 * 1024 * 1024


class Part(NamedTuple):
    """One mini-batch's committed output: ``length`` bytes at ``offset`` of
    ``path`` (a segment), or the whole file ``path`` (``length`` None)."""

    index: int
    path: str
    offset: int = 0
    length: int | None = None


def assemble_output(
    store: StateStore,
    indices: Iterable[int],
    fmt: str,
    file_name: str,
    strict: bool = False,
    locate: Callable[[int], tuple[str, int, int] | None] | None = None,
) -> tuple[str, int]:
    """Stream the committed parts, in mini-batch order, into the collected file.

    Returns the collected file's URL and the number of parts it holds. The parts
    are read one at a time; the client never holds the whole output. ``locate``
    gives a mini-batch's segment (``MiniBatchRecord.part``: file name, offset,
    length) when its part is in a segment file, None when it is a file of its
    own. A part that is not there is left out; with ``strict`` (``indices`` are
    mini-batches recorded with output) that is an error instead: their records
    are dropped, so that the next run scores them again, and no collected file
    is written.
    """
    fs = store.fs
    final = store.path(file_name)
    parts = _parts(store, sorted(indices), fmt, locate)
    found = _present(store, parts, fmt)
    if strict and not all(found):
        _parts_missing(store, [p for p, f in zip(parts, found) if not f])
    parts = [p for p, f in zip(parts, found) if f]
    tmp = store.path(temp_name(file_name)) if store.local else final
    store.assembly_warnings = []
    try:
        store.assembly_warnings = _assemble(fs, parts, fmt, tmp)
        if store.local:
            os.replace(tmp, final)
    except BaseException as exc:
        if store.local:
            remove_quietly(tmp)
            if is_disk_full(exc):
                raise _disk_full(store, parts, file_name, exc) from exc
        raise
    return store.url(final), len(parts)


def _parts(store: StateStore, wanted: list[int], fmt: str, locate) -> list[Part]:
    parts = []
    for index in wanted:
        where = locate(index) if locate is not None else None
        if where is None:
            parts.append(Part(index, store.part_path(index, fmt)))
        else:
            name, offset, length = where
            parts.append(Part(index, join(store.parts, name), offset, length))
    return parts


def _present(store: StateStore, parts: list[Part], fmt: str) -> list[bool]:
    """Whether each part is there: its file, or a segment file long enough, of
    this output's format (a rerun with another format finds none of the old)."""
    fs = store.fs
    suffix = "." + PART_SUFFIX.get(fmt, fmt)
    exists = fs.exists if not store.local else os.path.exists
    sizes: dict[str, int] = {}

    def size(path: str) -> int:
        if path not in sizes:
            try:
                sizes[path] = os.path.getsize(path) if store.local else fs.size(path)
            except (OSError, FileNotFoundError):
                sizes[path] = -1
        return sizes[path]

    return [
        exists(p.path)
        if p.length is None
        else p.path.endswith(suffix) and size(p.path) >= p.offset + p.length
        for p in parts
    ]


def _parts_missing(store: StateStore, missing: list[Part]) -> None:
    """Committed output that is gone: forget those mini-batches, and say so."""
    store.drop_records({p.index for p in missing})
    shown = ", ".join(str(p.index) for p in missing[:5])
    shown += ", ..." if len(missing) > 5 else ""
    raise JobError(
        f"{len(missing)} mini-batch(es) recorded as scored have no committed part "
        f"in {store.url(store.parts)} (mini-batches {shown}; e.g. "
        f"{missing[0].path.rsplit('/', 1)[-1]}): something removed or cut "
        "them in the output folder; their records were dropped and no "
        "collected file was written: run the same step again to score them"
    )


def _assemble(fs, parts: list[Part], fmt: str, target: str) -> list[str]:
    """Write the collected file ``target``; return the warnings (Parquet)."""
    with _PartReader(fs) as reader:
        if fmt == "parquet":
            return _assemble_parquet(reader, parts, target)
        if fmt == "csv":
            _assemble_csv(reader, parts, target)
            return []
        with _open_output(fs, target) as out:
            for path, offset, length in _runs(parts):
                reader.copy(path, offset, length, out)
    return []


def _runs(parts: list[Part]) -> Iterator[tuple[str, int, int | None]]:
    """The byte ranges to copy: neighbouring segments of one file as one."""
    run: list | None = None
    for p in parts:
        if (
            run is not None
            and p.length is not None
            and run[2] is not None
            and p.path == run[0]
            and p.offset == run[1] + run[2]
        ):
            run[2] += p.length
            continue
        if run is not None:
            yield tuple(run)
        run = [p.path, p.offset, p.length]
    if run is not None:
        yield tuple(run)


class _PartReader:
    """Reads parts. A few segment files stay open while their parts are read
    (at most ``keep_open``, the least recently used closed first: a folder
    resumed many times holds a segment file per runner of every run)."""

    keep_open = 32

    def __init__(self, fs) -> None:
        self.fs = fs
        self._open: OrderedDict[str, Any] = OrderedDict()

    def __enter__(self) -> _PartReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()

    def _segment_file(self, path: str, mapped: bool = False):
        """The open segment ``path`` (a pyarrow memory map with ``mapped``)."""
        key = f"{'map:' if mapped else ''}{path}"
        f = self._open.get(key)
        if f is not None:
            self._open.move_to_end(key)
            return f
        if len(self._open) >= self.keep_open:
            self._open.popitem(last=False)[1].close()
        if mapped:
            import pyarrow as pa

            f = pa.memory_map(path)
        else:
            f = self.fs.open(path, "rb")
        self._open[key] = f
        return f

    def read(self, part: Part) -> bytes:
        """The whole part."""
        if part.length is None:
            return self.fs.cat_file(part.path)
        f = self._segment_file(part.path)
        f.seek(part.offset)
        return f.read(part.length)

    def open(self, part: Part):
        """The part as a file (a segment's bytes are read whole)."""
        if part.length is None:
            return self.fs.open(part.path, "rb")
        return io.BytesIO(self.read(part))

    def first_line(self, part: Part) -> bytes:
        """The part's first line (a CSV header), without reading the rest."""
        if part.length is None:
            with self.fs.open(part.path, "rb") as f:
                return f.readline()
        f = self._segment_file(part.path)
        f.seek(part.offset)
        return f.readline(part.length)

    def copy(self, path: str, offset: int, length: int | None, out) -> None:
        """Copy ``length`` bytes at ``offset`` of ``path`` (all of it: None)."""
        if length is None:
            with self.fs.open(path, "rb") as f:
                while chunk := f.read(_COPY_CHUNK):
                    out.write(chunk)
            return
        f = self._segment_file(path)
        f.seek(offset)
        while length > 0:
            chunk = f.read(min(length, _COPY_CHUNK))
            if not chunk:
                raise OSError(f"{path} ends before its committed part")
            out.write(chunk)
            length -= len(chunk)

    def arrow(self, part: Part):
        """A Parquet-output part (Arrow IPC) opened: its schema, its batches.

        A segment on a local disk is read through a memory map, without a copy.
        """
        import pyarrow as pa

        if part.length is None:
            if is_local(self.fs):
                return pa.ipc.open_file(self._segment_file(part.path, mapped=True))
            return pa.ipc.open_file(pa.BufferReader(self.fs.cat_file(part.path)))
        if is_local(self.fs):
            mapped = self._segment_file(part.path, mapped=True)
            mapped.seek(part.offset)
            return pa.ipc.open_file(mapped.read_buffer(part.length))
        return pa.ipc.open_file(pa.BufferReader(self.read(part)))


def _disk_full(
    store: StateStore, parts: list[Part], file_name: str, exc: BaseException
) -> DiskFullError:
    """The full disk, with about how much the collected file needs (the parts')."""
    needed = sum(
        os.path.getsize(p.path) if p.length is None else p.length
        for p in parts
        if p.length is not None or os.path.exists(p.path)
    )
    try:
        free: int | None = shutil.disk_usage(store.root).free
    except OSError:
        free = None
    return DiskFullError(
        store.root,
        what=f"the collected file {file_name}",
        needed=needed,
        free=free,
        code=getattr(exc, "errno", None),
    )


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


def _assemble_csv(reader: _PartReader, parts: list[Part], target: str) -> None:
    """Concatenate CSV parts under one header: the union of their columns.

    Parts whose header is the union are copied byte for byte; the others are
    rewritten field by field into the union's column order (values kept exactly
    as written, missing columns empty).
    """
    import csv

    headers: list[bytes] = []
    for part in parts:
        headers.append(reader.first_line(part))
    columns: list[str] = []
    for line in headers:
        for name in _csv_header(line):
            if name not in columns:
                columns.append(name)
    with _open_output(reader.fs, target) as out:
        if not parts:
            return
        union = io.StringIO()
        csv.writer(union, lineterminator="\n").writerow(columns)
        union_line = union.getvalue().encode("utf-8")
        out.write(union_line)
        for part, line in zip(parts, headers):
            with reader.open(part) as f:
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


def _assemble_parquet(reader: _PartReader, parts: list[Part], target: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = []
    for part in parts:
        schemas.append(reader.arrow(part).schema)
    warnings: list[str] = []
    if schemas:
        schema, warnings = _unified_schema(schemas)
    else:
        schema = pa.schema([("result", pa.string())])
    with _open_output(reader.fs, target) as out:
        writer = None
        for part in parts:
            table = reader.arrow(part).read_all()
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
