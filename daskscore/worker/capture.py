"""A runner's stdout and stderr, with the job's secrets masked, into its log files.

The runner writes into pipes; a thread per stream in the worker reads them and
appends to ``logs/user/<worker>/stdout.txt`` and ``stderr.txt`` what
:class:`~daskscore.storage.StreamRedactor` lets out: the job's credentials (its
inputs', output's and models' storage options, its secret-named
``environment_variables``, the ``AZURE_STORAGE_*`` environment) never reach the
files, whatever the script prints, in whatever pieces. The threads live in the
worker, so what a runner printed before it was killed (a timeout, a crash) is
kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..storage import StreamRedactor

__all__ = ["Capture"]


def _pump(fd: int, target: list[str], redactor: StreamRedactor) -> None:
    """Drain ``fd`` into the file ``target[0]`` (which :meth:`Capture.redirect`
    may change between writes)."""
    path = target[0]
    out = open(path, "ab", buffering=0)
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            if target[0] != path:  # a kept runner now serves another job
                out.close()
                path = target[0]
                out = open(path, "ab", buffering=0)
            masked = redactor.feed(data)
            if masked:
                out.write(masked)
        out.write(redactor.flush())
    finally:
        out.close()
        os.close(fd)


class Capture:
    """Two pipes for a child's stdout and stderr, drained into ``paths``.

    Hand :attr:`stdout` and :attr:`stderr` to ``subprocess.Popen``, then call
    :meth:`started`; :meth:`close` waits until the child (and anything it started
    that holds the pipes) is done writing.
    """

    def __init__(
        self, stdout_path: str, stderr_path: str, secrets: Mapping[str, Any] | None
    ) -> None:
        self._threads: list[threading.Thread] = []
        self._read_ends: list[int] = []
        self._write_ends: list[int] = []
        self._targets = [[stdout_path], [stderr_path]]
        for path, target in zip((stdout_path, stderr_path), self._targets):
            read_end, write_end = os.pipe()
            self._read_ends.append(read_end)
            self._write_ends.append(write_end)
            self._threads.append(
                threading.Thread(
                    target=_pump,
                    args=(read_end, target, StreamRedactor(secrets)),
                    name=f"daskscore-capture-{os.path.basename(path)}",
                    daemon=True,
                )
            )
        self.stdout, self.stderr = self._write_ends

    def redirect(self, stdout_path: str, stderr_path: str) -> None:
        """Write what comes next into these files (a kept runner's next job)."""
        self._targets[0][0] = stdout_path
        self._targets[1][0] = stderr_path

    def started(self) -> None:
        """The child has its copies of the write ends: drop ours, start draining."""
        for fd in self._write_ends:
            os.close(fd)
        self._write_ends = []
        self._read_ends = []  # the threads close them
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Wait until both streams are written out, at most ``timeout`` seconds.

        Called once the child has exited, when what is left in the pipes takes
        milliseconds; a process the child left behind may keep them open (its
        output is still written while the worker lives).
        """
        for fd in self._write_ends + self._read_ends:  # the child never started
            os.close(fd)
        self._write_ends = self._read_ends = []
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
