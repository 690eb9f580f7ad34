"""A ``type: command`` job: its command line run as a process, ``code:`` as cwd.

The command runs with ``bash -c`` in the current Python environment (its ``bin``
folder first on ``PATH``), with the job's ``environment_variables``, on a Dask
worker when a client is given (``client.submit`` of :func:`run_command`), else
here. Its output and error go to ``<job folder>/user_logs/std_log.txt``. When the
real ``mltable`` package is not importable, a folder holding a one-line
``mltable.py`` (``daskscore.v2jobs.mltable_module``) is put on its ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from typing import Any

from ..errors import UsageError
from .bindings import Plan

__all__ = ["CommandJob", "CommandResult", "build_command_job", "run_command"]

_SHIM = "from daskscore.v2jobs.mltable_module import *  # noqa: F401,F403\n" \
        "from daskscore.v2jobs.mltable_module import MLTable, load  # noqa: F401\n"
_TAIL = 2000


class CommandResult:
    """What a command job did: its status, exit code, the tail of its output."""

    def __init__(self, returncode: int, tail: str, log: str, seconds: float) -> None:
        self.returncode = returncode
        self.status = "Completed" if returncode == 0 else "Failed"
        self.tail = tail
        self.log = log
        self.elapsed_seconds = seconds
        last = [line for line in tail.splitlines() if line.strip()]
        self.reason = "" if returncode == 0 else (
            f"the command exited with {returncode}"
            + (f": {last[-1].strip()}" if last else ""))


def run_command(command: str, cwd: str, env: dict[str, str], log: str,
                shim: str | None) -> tuple[int, str, float]:
    """Run ``command`` (a worker task, or here); its exit code and output's tail."""
    full = dict(os.environ)
    if full.get("PYTHONPATH"):  # the command runs elsewhere: relative entries break
        full["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in full["PYTHONPATH"].split(os.pathsep) if p)
    full.update(env)
    full["PATH"] = os.path.dirname(sys.executable) + os.pathsep + full.get("PATH", "")
    if shim:
        os.makedirs(shim, exist_ok=True)
        with open(os.path.join(shim, "mltable.py"), "w", encoding="utf-8") as f:
            f.write(_SHIM)
        full["PYTHONPATH"] = os.pathsep.join(
            p for p in (full.get("PYTHONPATH"), shim) if p)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.run(["/bin/bash", "-c", command], cwd=cwd, env=full,
                              stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False)
    with open(log, "rb") as f:
        f.seek(max(0, os.path.getsize(log) - _TAIL))
        tail = f.read().decode("utf-8", "replace")
    return proc.returncode, tail, time.perf_counter() - started


class CommandJob:
    """A built command job (nothing runs until :meth:`run`)."""

    def __init__(self, name: str, command: str, cwd: str, env: dict[str, str],
                 folder: str, outputs: list[tuple[str, str]]) -> None:
        self.name = name
        self.command = command
        self.cwd = cwd
        self.env = env
        self.folder = folder
        self.outputs = outputs  # (type, local path) to create first
        self.log = os.path.join(folder, "user_logs", "std_log.txt")

    def run(self, client: Any = None, progress: Any = None) -> CommandResult:
        for kind, path in self.outputs:
            os.makedirs(path if kind != "uri_file" else os.path.dirname(path),
                        exist_ok=True)
        shim = (None if importlib.util.find_spec("mltable") is not None
                else os.path.join(self.folder, ".daskscore", "shim"))
        args = (self.command, self.cwd, self.env, self.log, shim)
        if client is None:
            code, tail, seconds = run_command(*args)
        else:
            future = client.submit(run_command, *args, pure=False,
                                   key=f"daskscore-command-{self.name}-{time.time_ns()}")
            code, tail, seconds = future.result()
        return CommandResult(code, tail, self.log, seconds)


def build_command_job(plan: Plan, name: str) -> CommandJob:
    """The :class:`CommandJob` of job ``name`` of ``plan``."""
    rjob = plan.jobs[name]
    job = rjob.job
    command = plan.render(name, job.data["command"], "command")
    code = job.data.get("code")
    cwd = (os.path.normpath(os.path.join(job.base_dir, str(code))) if code
           else job.base_dir)
    if code and not os.path.isdir(cwd):
        raise UsageError(f"{job.where('code')}: {code}: no such folder ({cwd})")
    env = {str(k): plan.render(name, v, f"environment_variables.{k}")
           for k, v in (job.data.get("environment_variables") or {}).items()}
    outputs = [(v.type or "uri_folder", v.location.url)
               for v in rjob.outputs.values()
               if v.location is not None and v.location.is_local]
    return CommandJob(name, command, cwd, env, rjob.folder, outputs)
