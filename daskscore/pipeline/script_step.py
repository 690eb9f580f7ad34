"""A pipeline step that runs a plain Python script as a process: ``ScriptStep``.

Where a ``ParallelRunStep`` scores mini-batches on a cluster, a script step runs
one script once, in its ``source_directory``, with ``arguments`` as
``sys.argv[1:]`` (Azure ML v1's ``PythonScriptStep``, e.g. a step that copies
the predictions of a scoring step somewhere). Its ``outputs`` are folders that
later steps take as inputs; the pipeline runs the steps in order. It is never
reused: a script's effects are not known.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import check_name
from ..errors import ConfigError
from ..registry._common import REGISTRY_NAME

__all__ = ["ScriptRunResult", "ScriptStep"]


@dataclass
class ScriptRunResult:
    """What a script step's run gives the pipeline (the fields a step result has)."""

    status: str
    reason: str | None
    log_dir: str
    output_dir: str | None
    elapsed_seconds: float
    returncode: int
    output_file: str | None = None
    total_items: int = 1
    succeeded_items: int = 0
    failed_items: int = 0
    mini_batches: int = 0
    failed_mini_batches: int = 0
    resumed_mini_batches: int = 0


class ScriptStep:
    """Run ``script_name`` from ``source_directory`` as ``python script args...``.

    Parameters
    ----------
    name
        The step name (as for ``ParallelRunStep``).
    script_name, source_directory
        The script, relative to the folder it runs in (default: the current one).
    arguments
        Strings given to the script as ``sys.argv[1:]``.
    inputs
        Datasets or ``PipelineData`` it reads (they order the pipeline).
    outputs
        Output folders (paths, or objects with ``.path``), created before it runs.
    log_dir
        Where its ``stdout.txt`` (stdout and stderr) is written.
    """

    allow_reuse = False

    def __init__(
        self,
        name: str,
        script_name: str,
        source_directory: str | None = None,
        arguments: Sequence[Any] | None = None,
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        log_dir: str | None = None,
    ) -> None:
        self.name = check_name("name", name, REGISTRY_NAME)
        self.source_directory = os.path.abspath(source_directory or ".")
        script = os.path.join(
            self.source_directory, os.fspath(script_name).replace("\\", "/")
        )
        if not os.path.isfile(script):
            raise ConfigError(
                "script_name",
                script_name,
                f"a script in source_directory={self.source_directory}",
            )
        self.script = script
        self.arguments = [str(a) for a in (arguments or [])]
        self.inputs = list(inputs or [])
        self.side_inputs: list[Any] = []
        self.outputs = [os.fspath(getattr(o, "path", o)) for o in (outputs or [])]
        self.log_dir = log_dir or os.path.join(self.source_directory, "logs", name)
        # where the pipeline looks for a step's output (its logs without one)
        self.output = self.outputs[0] if self.outputs else self.log_dir

    def __repr__(self) -> str:
        return f"ScriptStep(name={self.name!r}, script={self.script!r})"

    def fingerprint(self) -> str:
        """Unique per run: a script step is never reused."""
        return f"script-{uuid.uuid4().hex}"

    def run(self, client: Any = None, progress: Any = None) -> ScriptRunResult:
        """Run the script to its end; a non-zero exit is a Failed result."""
        for folder in self.outputs:
            if "://" not in folder:
                os.makedirs(folder, exist_ok=True)
        os.makedirs(self.log_dir, exist_ok=True)
        log = os.path.join(self.log_dir, "stdout.txt")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (self.source_directory, env.get("PYTHONPATH")) if p
        )
        started = time.perf_counter()
        with open(log, "wb") as out:
            code = subprocess.call(
                [sys.executable, self.script, *self.arguments],
                cwd=self.source_directory,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        elapsed = time.perf_counter() - started
        reason = None
        if code != 0:
            with open(log, encoding="utf-8", errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
            last = lines[-1] if lines else "no output"
            reason = (
                f"{os.path.basename(self.script)} exited with code {code}: "
                f"{last} (log: {log})"
            )
        return ScriptRunResult(
            status="Completed" if code == 0 else "Failed",
            reason=reason,
            log_dir=self.log_dir,
            output_dir=self.output,
            elapsed_seconds=elapsed,
            returncode=code,
            succeeded_items=int(code == 0),
            failed_items=int(code != 0),
        )
