"""Where a runner is in its current try, shared with its worker through memory.

A try used to cost three answers on the socket besides the outcome itself
(``started`` when the read was done, ``returned`` when ``run()`` returned), only
so that the worker could time the read, ``run()`` and the commit separately.
Each answer wakes the worker's thread: on a busy 2-core machine that was most
of a small mini-batch's cost. Now the runner writes its phase (reading,
running, writing) with the time it began and the mini-batch's item count into
a small memory-mapped file; the worker looks at it only when it has waited as
long as the phase it last saw may take, which is exactly when the old answers
mattered. The outcome still comes on the socket.

The board is one 32-byte record guarded by a sequence number (even: stable,
odd: being written), so a reader never takes half of one update for the whole.
``time.monotonic()`` is the same clock in every process of a Linux machine.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

__all__ = ["IDLE", "READING", "RUNNING", "WRITING", "PhaseBoard"]

IDLE, READING, RUNNING, WRITING = 0, 1, 2, 3

_RECORD = struct.Struct("<QQdq")  # sequence, phase, since (monotonic), items


class PhaseBoard:
    """One runner's phase: written by the runner, read by its worker.

    ``PhaseBoard(path, create=True)`` (the worker, before it starts the runner)
    makes the file; the runner opens the same ``path``.
    """

    def __init__(self, path: str, create: bool = False) -> None:
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, _RECORD.size)
            self._map = mmap.mmap(fd, _RECORD.size)
        finally:
            os.close(fd)
        self._seq = _RECORD.unpack_from(self._map)[0] & ~1

    def set(self, phase: int, items: int = 0) -> None:
        """Enter ``phase`` now (the runner's side; one writer only)."""
        self._seq += 1
        struct.pack_into("<Q", self._map, 0, self._seq)  # odd: being written
        self._seq += 1
        _RECORD.pack_into(self._map, 0, self._seq, phase, time.monotonic(), items)

    def read(self) -> tuple[int, float, int]:
        """``(phase, since, items)`` as last written (the worker's side)."""
        while True:
            seq, phase, since, items = _RECORD.unpack_from(self._map)
            if not seq & 1 and struct.unpack_from("<Q", self._map)[0] == seq:
                return phase, since, items
            time.sleep(0)  # the runner is writing it right now

    def close(self) -> None:
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass
