"""A command stopped by Ctrl-C or SIGTERM ends, whatever a library's exit does.

What the command had to do on the way out (the job's lock given back, its
committed mini-batches on disk, the "interrupted" line) is done before
:func:`end_within` is called; a library's exit handler that then hangs (a Dask
client whose event loop was interrupted in the middle of a call) must not keep
the process, and a terminal or a scheduler waiting for it, forever.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

__all__ = ["end_within", "own_process"]

# set by cli.main() when it runs as the ``daskscore`` command (not called from
# Python code, whose process is not ours to end)
own_process = False


def end_within(code: int, seconds: float = 30.0) -> None:
    """End this process with ``code`` in ``seconds`` if it has not ended by
    then (only when :data:`own_process`)."""
    if not own_process:
        return

    def end() -> None:
        time.sleep(seconds)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    threading.Thread(target=end, daemon=True, name="daskscore-exit").start()
