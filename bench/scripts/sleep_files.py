"""Entry script with a fixed cost per file: reads it, then sleeps ``--work-ms``.

Stands in for a model whose time per file does not depend on the machine, so that
what a benchmark measures around it is daskscore's reading of the files.
``run()`` returns ``"<name>: <bytes>"`` per file.
"""

from __future__ import annotations

import os
import sys
import time

_work_s = 0.0


def init() -> None:
    global _work_s
    argv = sys.argv[1:]
    if "--work-ms" in argv:
        _work_s = float(argv[argv.index("--work-ms") + 1]) / 1000


def run(mini_batch):
    out = []
    for path in mini_batch:
        with open(path, "rb") as f:
            size = len(f.read())
        time.sleep(_work_s)  # the model's time per file
        out.append(f"{os.path.basename(path)}: {size}")
    return out
