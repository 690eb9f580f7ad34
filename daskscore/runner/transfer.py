"""Large values between a worker and its runner, without copying them through a pipe.

A partition handed to ``run()`` (``ds.map_partitions``, or a dask DataFrame input
of a step) and what ``run()`` returns for it travel between the worker and its
runner process. Sent through the socket they are pickled into one bytes object,
written, read back in chunks and unpickled: four copies of every byte. Here a
value whose buffers are large is pickled with protocol 5, its buffers (the
numpy/pandas column data) written once to a file in shared memory
(``/dev/shm`` when it has room, else the sender's scratch folder), and only the
small pickle and the file's name go through the socket. The receiver maps the
file copy-on-write (writable, as a normal unpickled value is) and unpickles
without copying, then removes the file. Small values go through the socket as
they are.

A partition that a runner can read itself does not travel at all: a
:class:`PartitionRead` (a partition of ``dd.read_parquet``: Dask's own read
task for it, which depends on nothing) goes instead, and the runner runs it;
for a plain piece of one Parquet file it is a :class:`DaskPiece`, which the
runner reads with pyarrow as Dask's engine would, without importing
``dask.dataframe``.
"""

from __future__ import annotations

import mmap
import os
import pickle
import tempfile
from dataclasses import dataclass
from typing import Any

from ..io.parquet import read_dask_piece

__all__ = [
    "DaskPiece",
    "PartitionRead",
    "Shipped",
    "discard",
    "pack",
    "sweep_stale",
    "unpack",
]

# values whose out-of-band buffers total less than this go through the socket
INLINE_LIMIT = 1 << 20
_SHM = "/dev/shm"
_PREFIX = "daskscore-value-"


@dataclass(frozen=True)
class Shipped:
    """A value sent through a file: its pickle, the file and its buffers' sizes."""

    payload: bytes
    path: str
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class PartitionRead:
    """One partition of a Dask collection, described: Dask's task that reads it.

    ``task`` is the partition's task of the collection's (optimized) read
    expression, a ``dask`` Task that depends on no other task: calling it gives
    exactly the pandas DataFrame the Dask worker would compute for the
    partition. ``name`` is the collection's name (for tokenizing the graph).
    """

    name: str
    index: int
    task: Any = None
    piece: DaskPiece | None = None

    def __dask_tokenize__(self) -> tuple:
        return ("daskscore-partition-read", self.name, self.index)

    def read(self) -> Any:
        """The partition (a pandas DataFrame), read here."""
        if self.piece is not None:
            return self.piece.read()
        return self.task()


@dataclass(frozen=True)
class DaskPiece:
    """A ``dd.read_parquet`` partition that is a plain piece of one Parquet
    file, read without Dask (``io.parquet.read_dask_piece``): the runner then
    never imports ``dask.dataframe``. ``fs`` is the read's fsspec filesystem."""

    fs: Any
    path: str
    row_groups: tuple[int, ...] | None
    columns: tuple[Any, ...]
    index: Any
    categories: Any
    convert_string: bool
    columns_name: Any = None

    def read(self) -> Any:
        return read_dask_piece(
            self.fs,
            self.path,
            None if self.row_groups is None else list(self.row_groups),
            list(self.columns),
            self.index,
            self.categories,
            self.convert_string,
            self.columns_name,
        )


def _folder(total: int, fallback: str) -> str:
    try:
        st = os.statvfs(_SHM)
        if st.f_bavail * st.f_frsize > 2 * total:
            return _SHM
    except OSError:
        pass
    return fallback or tempfile.gettempdir()


def pack(value: Any, fallback_dir: str = "") -> Any:
    """``value`` itself, or a :class:`Shipped` when its buffers are large."""
    if value is None or isinstance(value, str | bytes | int | float | list | tuple):
        return value  # a Bag's list: python objects, no large buffers
    buffers: list[pickle.PickleBuffer] = []
    try:
        payload = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
    except (BufferError, pickle.PicklingError, TypeError, AttributeError):
        return value  # pickled the usual way; an unpicklable value fails there
    total = sum(r.nbytes for r in raws)
    if total < INLINE_LIMIT:
        return value
    # named after the writer, so that a file a killed process left is found
    fd, path = tempfile.mkstemp(
        prefix=f"{_PREFIX}{os.getpid()}-", dir=_folder(total, fallback_dir)
    )
    try:
        with os.fdopen(fd, "wb") as f:
            for raw in raws:
                f.write(raw)
    except OSError:
        discard(Shipped(b"", path, ()))
        return value
    return Shipped(payload, path, tuple(r.nbytes for r in raws))


def unpack(value: Any) -> Any:
    """The value :func:`pack` gave; a :class:`Shipped` one is read and its file
    removed."""
    if not isinstance(value, Shipped):
        return value
    try:
        with open(value.path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    finally:
        discard(value)
    view = memoryview(mapped)
    buffers, offset = [], 0
    for size in value.sizes:
        buffers.append(view[offset : offset + size])
        offset += size
    return pickle.loads(value.payload, buffers=buffers)


def discard(value: Any) -> None:
    """Remove a :class:`Shipped` value's file (when it was never unpacked)."""
    if isinstance(value, Shipped):
        try:
            os.unlink(value.path)
        except OSError:
            pass


def sweep_stale() -> int:
    """Remove the files of processes that died before the value was read.

    A worker killed between writing a partition and its runner reading it leaves
    the file in ``/dev/shm``; each new runner's worker sweeps them. Returns how
    many were removed.
    """
    removed = 0
    try:
        names = os.listdir(_SHM)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        pid = name[len(_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(_SHM, name))
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
