"""CSV and JSON-lines inputs, split into byte ranges cut at line ends.

A mini-batch is one file's byte range of about ``mini_batch_size``; the reader
extends it to the end of its last line (``fsspec.utils.read_block``) and puts
the CSV header back in front. Compressed files, and CSV files whose quoted values
may hold line breaks (``support_multi_line=True``), are never split.

A quoted value holding a line break must never be cut: a byte range that starts
or ends inside one would be parsed as garbage rows. Two checks keep that from
happening, both with the quote rules of pandas' parser (a quote opens a value only
at the start of a field, ``""`` inside a quoted value is a quote, a quote inside
an unquoted field is text):

- planning (:func:`quoted_line_break`) reads the start of each CSV file it would
  split (``daskscore.csv.quote-scan`` bytes; all of a smaller file): where a
  quoted value holds a line break, the file is read whole, as with
  ``support_multi_line=True``, and the planner warns once;
- reading (:func:`range_problem`) checks each range's own bytes: a range that
  ends inside a quoted value, or whose first quote looks like the end of a value
  that began before it, is checked exactly by scanning the file from its start;
  one that really starts or ends inside a quoted value fails as ``READ_ERROR``
  (its rows counted), naming ``support_multi_line=True`` / ``--csv-multi-line``.

What stays undetectable from a range alone: a quoted value longer than a whole
mini-batch with no quote in it (or one whose end looks like a field start), when
the planner's scan did not reach it. Such files need ``support_multi_line=True``.
"""

from __future__ import annotations

import codecs
import functools
import io
import math
import re
from typing import Any

from .._protocol import MiniBatchSpec
from ..storage import url_to_fs
from ._common import WHOLE_FILE, is_compressed, open_range

KINDS = ("csv", "jsonl")


def plan_text(
    fmt: str, path: str, file_size: int | None, size: int, split: bool = True
) -> list[MiniBatchSpec]:
    """The byte ranges of one file (``index`` 0: the caller numbers them)."""
    if file_size is None:
        return [
            MiniBatchSpec(
                index=0, kind="error", paths=(path,), items=1, error="file not found"
            )
        ]
    if file_size == 0:
        return []
    if not split or is_compressed(path) or file_size <= size:
        # compressed text cannot be split by byte ranges, nor can rows with
        # quoted line breaks
        return [
            MiniBatchSpec(index=0, kind=fmt, paths=(path,), start=0, stop=file_size)
        ]
    count = math.ceil(file_size / size)
    step = math.ceil(file_size / count)
    return [
        MiniBatchSpec(
            index=0,
            kind=fmt,
            paths=(path,),
            start=start,
            stop=min(start + step, file_size),
        )
        for start in range(0, file_size, step)
    ]


class TextReadError(Exception):
    """A CSV/JSON-lines mini-batch that cannot be read, and how many rows it held."""

    def __init__(self, message: str, rows: int) -> None:
        super().__init__(message)
        self.rows = rows


def read_text_bytes(
    spec: MiniBatchSpec,
    storage_options: dict[str, Any],
    read_options: dict[str, Any],
    header: Any = None,
) -> bytes:
    """A CSV/JSON-lines mini-batch's rows as bytes (the CSV header first).

    ``header(fs, fpath)`` gives a file's first line (the reader caches it).
    Raises :class:`TextReadError` for a CSV range that starts or ends inside a
    quoted value (see :func:`range_problem`).
    """
    path = spec.paths[0]
    fs, fpath = url_to_fs(path, storage_options)
    whole = spec.start == 0 and (spec.stop >= WHOLE_FILE or spec.stop >= fs.size(fpath))
    if whole:
        import fsspec

        with fsspec.open(path, "rb", compression="infer", **storage_options) as f:
            return f.read()
    length = spec.stop - spec.start
    problem = None
    with open_range(fs, fpath, length) as f:
        offset, data = _read_block(f, spec.start, length)
        if spec.kind == "csv":
            problem = range_problem(f, offset, data, spec, read_options)
    if problem is not None:
        raise problem
    if spec.kind == "csv" and read_options.get("header", True) and spec.start > 0:
        data = (header or first_line)(fs, fpath) + data
    return data


def _read_block(f, offset: int, length: int) -> tuple[int, bytes]:
    """``fsspec.utils.read_block(f, offset, length, b"\\n")``, and where it starts."""
    from fsspec.utils import seek_delimiter

    f.seek(offset)
    seek_delimiter(f, b"\n", 2**16)
    start = f.tell()
    f.seek(offset + length)
    seek_delimiter(f, b"\n", 2**16)
    end = f.tell()
    f.seek(start)
    return start, f.read(max(end - start, 0))


# -- quoted values across range edges ----------------------------------------------
# Bytes scanned at a time when a range's quote state is checked from the file start
_SCAN_CHUNK = 1 << 24
# Bytes read at a time by planning's scan of a CSV file's start
_PLAN_CHUNK = 1 << 18


class _Quotes:
    """The quote rules of pandas' CSV parser as regular expressions, for one
    single-byte separator (possessive, so that they never backtrack)."""

    def __init__(self, sep: bytes) -> None:
        s = re.escape(sep)
        at_start = rb"(?<![^" + s + rb"\r\n])"  # a field starts here
        mid = rb"(?<=[^" + s + rb"\r\n])"  # inside an unquoted field
        value = rb'"[^"]*+(?:""[^"]*+)*+"'
        one_line = rb'"[^"\n]*+(?:""[^"\n]*+)*+"'
        self.sep = sep
        # the longest prefix that is rows (the data starting outside any quote)
        self.rows = re.compile(rb'(?:[^"]++|' + at_start + value + b"|" + mid + b'")*+')
        # the same, where no quoted value holds a line break
        self.one_line = re.compile(
            rb'(?:[^"]++|' + at_start + one_line + b"|" + mid + b'")*+'
        )
        # from inside a quoted value: the rest of it, to its closing quote
        self.rest = re.compile(rb'[^"]*+(?:""[^"]*+)*+"')
        # one quoted value (to the end of the data when it is not closed)
        self.value = re.compile(at_start + rb'"[^"]*+(?:""[^"]*+)*+(?:"|\Z)')

    def ends_inside(self, data: bytes, inside: bool = False) -> bool:
        """Whether ``data``, starting inside a quoted value or not, ends in one."""
        pos = 0
        if inside:
            found = self.rest.match(data)
            if found is None:
                return True
            pos = found.end()
        return self.rows.match(data, pos).end() < len(data)

    def looks_like_tail(self, data: bytes) -> bool:
        """Whether the first quote of ``data`` that is not a ``""`` pair may close
        a quoted value begun before ``data`` (a field ends right after it)."""
        found = self.rest.match(data)
        return found is not None and data[found.end() : found.end() + 1] in (
            b"", self.sep, b"\r", b"\n"
        )

    def rows_in(self, data: bytes, inside: bool, ends_inside: bool) -> int:
        """The rows a range holds: those that start in it."""
        quoted, pos = 0, 0
        if inside:
            found = self.rest.match(data)
            pos = len(data) if found is None else found.end()
            quoted += data[:pos].count(b"\n")
        for value in self.value.finditer(data, pos):
            quoted += value.group().count(b"\n")
        rows = data.count(b"\n") - quoted
        if data.strip() and not data.endswith(b"\n") and not ends_inside:
            rows += 1  # the last row of the file, without a line break
        return max(rows - int(inside) + int(ends_inside), 0)

    def inside_at(self, f, offset: int) -> bool:
        """Whether byte ``offset`` of the open file (a row start) is inside a quoted
        value: the file scanned from its start, cut at line ends."""
        f.seek(0)
        inside, done, carry = False, 0, b""
        while done < offset:
            block = f.read(min(_SCAN_CHUNK, offset - done))
            if not block:
                break
            done += len(block)
            data = carry + block
            cut = len(data) if done >= offset else data.rfind(b"\n") + 1
            inside = self.ends_inside(data[:cut], inside) if cut else inside
            carry = data[cut:]
        return inside


@functools.lru_cache(maxsize=16)
def _quotes(sep: bytes) -> _Quotes:
    return _Quotes(sep)


def _quote_rules(read_options: dict[str, Any]) -> _Quotes | None:
    """The quote rules of a CSV input, or None where they cannot be checked by
    bytes (a separator of several bytes, or one that is a quote or line break)."""
    sep = read_options.get("separator", ",")
    try:
        raw = sep.encode(read_options.get("encoding") or "utf-8")
    except (AttributeError, LookupError, UnicodeError):
        return None
    if len(raw) != 1 or raw in (b'"', b"\r", b"\n"):
        return None
    return _quotes(raw)


def range_problem(
    f, offset: int, data: bytes, spec: MiniBatchSpec, read_options: dict[str, Any]
) -> TextReadError | None:
    """Why a CSV byte range cannot be scored alone, or None when it can.

    ``data`` is the range's rows as cut at line ends, starting at byte ``offset``
    of the open file ``f``. Where the range's own bytes show no doubt (it ends
    outside any quoted value, and its first quote cannot close one begun
    before it) it is taken as is; otherwise the file is scanned from its start
    for the exact quote state, so a false alarm (a stray quote) still reads.
    """
    rules = _quote_rules(read_options)
    if rules is None or b'"' not in data:
        return None
    # In a well-formed file an odd number of quotes means an edge inside a quoted
    # value, and a range that starts inside one has a first lone quote that ends
    # a field; the exact (slower) rules run only then (stray quotes in text)
    ends = data.count(b'"') % 2 == 1 and rules.ends_inside(data)
    if not ends and not (offset > 0 and rules.looks_like_tail(data)):
        return None
    inside = rules.inside_at(f, offset) if offset > 0 else False
    ends_inside = rules.ends_inside(data, inside)
    if not inside and not ends_inside:
        return None
    rows = rules.rows_in(data, inside, ends_inside)
    if offset == 0 and read_options.get("header", True):
        rows = max(rows - 1, 0)  # the header line is no row
    edge = {
        (True, False): "starts",
        (False, True): "ends",
        (True, True): "starts and ends",
    }[(inside, ends_inside)]
    return TextReadError(
        f"bytes {spec.start}-{spec.stop} of {spec.paths[0]}: the mini-batch {edge} "
        "inside a quoted value that holds a line break, so this file cannot be "
        "split into byte ranges; read it whole with support_multi_line=True "
        "(CLI --csv-multi-line)",
        rows,
    )


def quoted_line_break(
    path: str,
    file_size: int,
    storage_options: dict[str, Any],
    read_options: dict[str, Any],
    limit: int,
) -> bool:
    """Whether the first ``limit`` bytes of a CSV file (cut at a line end; all of
    a smaller file) hold a quoted value with a line break (or an unclosed one)."""
    rules = _quote_rules(read_options)
    if rules is None or limit <= 0:
        return False
    try:
        fs, fpath = url_to_fs(path, storage_options)
        # exact ranged reads of a modest size: on blob storage each is one GET
        # of its own bytes (a read-ahead file would fetch a block more)
        end = min(limit, file_size)
        sample = b"".join(
            fs.cat_file(fpath, start, min(start + _PLAN_CHUNK, end))
            for start in range(0, end, _PLAN_CHUNK)
        )
    except Exception:  # noqa: BLE001 - the reader says what is wrong with the file
        return False
    if len(sample) < file_size:
        sample = sample[: sample.rfind(b"\n") + 1]
    return rules.one_line.match(sample).end() < len(sample)


def splittable_encoding(read_options: dict[str, Any]) -> bool:
    """Whether a text file in this encoding can be cut at ``\\n`` bytes (the
    ASCII-compatible ones: utf-8, latin-1, cp1252, ...; not utf-16)."""
    name = read_options.get("encoding")
    if not name:
        return True
    try:
        codecs.lookup(name)
        return ',\n"'.encode(name) == b',\n"'
    except (LookupError, UnicodeError):
        return False


def text_split_check(
    fmt: str,
    path: str,
    file_size: int | None,
    size: int,
    storage_options: dict[str, Any],
    read_options: dict[str, Any],
    scan: int,
) -> str | None:
    """Why a text file that planning would split must be read whole, or None.

    ``"quoted line break"``: a CSV file whose first ``scan`` bytes hold a quoted
    value with a line break (see :func:`quoted_line_break`).
    """
    if (
        fmt != "csv"
        or not file_size
        or file_size <= size
        or is_compressed(path)
        or read_options.get("support_multi_line")
    ):
        return None
    if quoted_line_break(path, file_size, storage_options, read_options, scan):
        return "quoted line break"
    return None


def first_line(fs, fpath: str) -> bytes:
    """The first line of a file (a CSV header)."""
    with open_range(fs, fpath, 0) as f:
        return f.readline()


def parse_text(data: bytes, kind: str, read_options: dict[str, Any],
               keep: tuple[str, ...] = ()):
    """The rows of a CSV/JSON-lines mini-batch as a pandas DataFrame.

    CSV columns are typed as :func:`typed_frame` says (but those in ``keep``).
    """
    import pandas as pd

    if not data.strip():
        return pd.DataFrame()
    encoding = read_options.get("encoding") or "utf-8"
    if kind == "csv":
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=read_options.get("separator", ","),
            header=0 if read_options.get("header", True) else None,
            encoding=encoding,
        )
        return typed_frame(frame, read_options, keep)
    return pd.read_json(io.BytesIO(data), lines=True, encoding=encoding)


# a value that reads as a date or a date and time (ISO 8601 or m/d/Y, with - / .)
_DATE_LIKE = re.compile(
    r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?\s*$"
)
COLUMN_TYPES = ("str", "int", "float", "bool", "datetime")


def column_type_name(kind: Any) -> str:
    """A ``set_column_types`` value as one of :data:`COLUMN_TYPES` (a datetime with
    its format as ``datetime:<format>``): a name (``"int"``), a Python type
    (``int``) or an object with a name such as ``DataType.to_datetime(...)``."""
    name = str(getattr(kind, "__name__", None) or getattr(kind, "name", None)
               or kind).lower()
    for wanted, words in (("datetime", ("date", "time")), ("bool", ("bool",)),
                          ("int", ("int", "long")),
                          ("float", ("float", "double", "decimal")),
                          ("str", ("str",))):
        if any(w in name for w in words):
            formats = getattr(kind, "formats", None) or getattr(kind, "format", None)
            if wanted == "datetime" and formats:
                first = formats if isinstance(formats, str) else list(formats)[0]
                return f"datetime:{first}"
            return wanted
    raise ValueError(f"set_column_types: {kind!r} is not a column type; give one "
                     f"of {', '.join(COLUMN_TYPES)} (or int, float, str, bool)")


def _as_type(series, kind: str):
    import pandas as pd

    if kind.startswith("datetime"):
        fmt = kind.partition(":")[2] or None
        return pd.to_datetime(series, format=fmt or "mixed", errors="coerce")
    if kind == "int":
        numbers = pd.to_numeric(series, errors="coerce")
        return numbers.astype("int64" if numbers.notna().all() else "Int64")
    if kind == "float":
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if kind == "bool":
        words = {"true": True, "false": False, "1": True, "0": False, "yes": True,
                 "no": False}
        return series.map(lambda v: words.get(str(v).strip().lower())
                          if pd.notna(v) else None).astype("boolean")
    return series.map(lambda v: v if pd.isna(v) else str(v)).astype(object)


def _dates(series):
    """``series`` as datetime64 when every value reads as a date, else as is."""
    import pandas as pd

    values = series.dropna()
    if values.empty or not all(isinstance(v, str) and _DATE_LIKE.match(v)
                               for v in values):
        return series
    for fmt in ("ISO8601", "mixed"):
        try:
            return pd.to_datetime(series, format=fmt)
        except (ValueError, TypeError):
            continue
    return series


def _is_text(series) -> bool:
    import pandas as pd

    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


def typed_frame(frame, read_options: dict[str, Any], keep: tuple[str, ...] = ()):
    """A CSV mini-batch's columns typed as the reference system types them.

    ``infer_column_types`` (the default): a text column whose values all read as
    dates or datetimes becomes ``datetime64`` (numbers are numbers already);
    ``set_column_types`` (column -> a :data:`COLUMN_TYPES` name) wins over it;
    ``empty_as_string``: empty values of text columns are ``""``, not missing.
    """
    types = read_options.get("set_column_types") or {}
    if read_options.get("infer_column_types", True):
        for column in frame.columns:
            if column in keep or column in types or not _is_text(frame[column]):
                continue
            frame[column] = _dates(frame[column])
    for column, kind in types.items():
        if column in frame.columns and column not in keep:
            frame[column] = _as_type(frame[column], kind)
    if read_options.get("empty_as_string"):
        for column in frame.columns:
            if _is_text(frame[column]) and column not in keep:
                frame[column] = frame[column].fillna("")
    return frame


def parse_problem(
    exc: Exception, data: bytes, spec: MiniBatchSpec, read_options: dict[str, Any]
) -> TextReadError:
    """A mini-batch whose bytes did not parse: one line saying why and where,
    and its rows (its non-blank lines, less the CSV header)."""
    rows = sum(1 for line in data.splitlines() if line.strip())
    if spec.kind == "csv" and read_options.get("header", True):
        rows = max(rows - 1, 0)
    path = spec.paths[0]
    if isinstance(exc, UnicodeDecodeError):
        encoding = read_options.get("encoding") or "utf-8"
        bad = exc.object[exc.start : exc.start + 1]
        return TextReadError(
            f"{path} is not {encoding} text ({exc.reason}: byte {bad!r}); "
            "give its encoding with encoding='latin-1' (or the right one) in "
            "Dataset.Tabular.from_delimited_files/from_json_lines_files (CLI "
            "--encoding)",
            rows,
        )
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if spec.kind == "jsonl":
        line = _bad_json_line(data, read_options)
        if line is not None:
            where = (
                f"line {line} of {path}"
                if spec.start == 0
                else f"line {line} of the mini-batch (bytes {spec.start}-"
                f"{spec.stop} of {path}; counted from the first whole line)"
            )
            text = f"{where} is not valid JSON: {text}"
    return TextReadError(text, rows)


def _bad_json_line(data: bytes, read_options: dict[str, Any]) -> int | None:
    """The number (from 1) of the first line of ``data`` that is not JSON."""
    import json

    encoding = read_options.get("encoding") or "utf-8"
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line.decode(encoding))
        except ValueError:
            return number
    return None


def pandas_csv_options(read_options: dict[str, Any]) -> dict[str, Any]:
    """``pandas.read_csv`` / ``dask.dataframe.read_csv`` options of a CSV input."""
    opts: dict[str, Any] = {"sep": read_options.get("separator", ",")}
    if not read_options.get("header", True):
        opts["header"] = None
    if read_options.get("encoding"):
        opts["encoding"] = read_options["encoding"]
    return opts
