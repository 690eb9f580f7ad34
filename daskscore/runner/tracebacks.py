"""The user's errors as they should see them: their frames, their file and line."""

from __future__ import annotations

import os
import traceback

_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))
# (worker-local copy of the source folder, the user's folder), set by the runner
PATH_MAP = ["", ""]


def user_traceback(exc: BaseException, script_path: str) -> str:
    """The traceback of an exception, starting at the user's own frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    # drop our own frames at the top: the user's code starts at the first frame
    # outside the runner
    skip = 0
    for frame in frames:
        if os.path.dirname(os.path.abspath(frame.filename)) == _RUNNER_DIR:
            skip += 1
        else:
            break
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames[skip:])
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    # show the user's own paths, not the worker-local copy of their folder
    bundle, source = PATH_MAP
    return text.replace(bundle, source) if bundle else text


def error_line(exc: BaseException, script_path: str) -> str:
    """One line: the exception and where in the user's script it was raised."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.abspath(frame.filename) == os.path.abspath(script_path):
            where = f" (at {os.path.basename(script_path)}:{frame.lineno})"
            break
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    head = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return f"{head}{where}"[:500]
