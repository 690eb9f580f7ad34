"""Entry script that does nothing: daskscore's own start-up and per-mini-batch cost.

``init()`` does nothing; ``run()`` returns its input. With ``--stamp PATH`` each
``run()`` call also appends ``time.time()`` to PATH, so a benchmark can tell when
the first mini-batch finished.
"""

from __future__ import annotations

import sys
import time

_stamp: str | None = None


def init() -> None:
    pass


def _stamp_path() -> str | None:
    argv = sys.argv[1:]
    if "--stamp" in argv:
        i = argv.index("--stamp")
        if i + 1 < len(argv):
            return argv[i + 1]
    return None


def run(mini_batch):
    global _stamp
    if _stamp is None:
        _stamp = _stamp_path() or ""
    if _stamp:
        with open(_stamp, "a") as f:
            f.write(f"{time.time():.6f}\n")
    return list(mini_batch)
