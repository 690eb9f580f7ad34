"""The daskscore error tree.

::

    DaskScoreError
    ├── ConfigError (also ValueError)        bad ParallelRunConfig/ParallelRunStep field
    ├── DatasetError (also ValueError)       an input cannot be listed or planned
    ├── EntryScriptError                     the entry script cannot be loaded (syntax,
    │                                        import error, missing init/run)
    ├── ErrorThresholdExceeded               raised by StepRunResult.raise_for_status()
    ├── JobError                             the job could not run (cluster, sink)
    ├── MiniBatchError                       ds.map_partitions: a partition used up
    │                                        its tries (raised by compute())
    ├── UsageError                           a bad command line or job file
    └── WorkspaceError                       a workspace, its config or a registry entry
        │                                    cannot be read or written
        └── NotRegisteredError (also LookupError)  no datastore / dataset / model /
                                             run / experiment of that name or version

A threshold being exceeded is not raised by ``ParallelRunStep.run()``: the result's
``status`` is ``"Failed"`` and ``raise_for_status()`` raises
:class:`ErrorThresholdExceeded` on request.

Every error carries an ``exit_code`` used by the command line: 2 for usage and
configuration problems, 1 for a job that ran and failed.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DaskScoreError",
    "DatasetError",
    "EntryScriptError",
    "ErrorThresholdExceeded",
    "JobError",
    "MiniBatchError",
    "NotRegisteredError",
    "UsageError",
    "WorkspaceError",
]


class DaskScoreError(Exception):
    """Base class of every error daskscore raises on purpose."""

    exit_code = 1


class ConfigError(DaskScoreError, ValueError):
    """A configuration field has a value that is not allowed.

    Parameters
    ----------
    field
        The parameter name, as the user spelled it (``mini_batch_size``).
    value
        The offending value.
    allowed
        What is allowed, in words.
    """

    exit_code = 2

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(field, value, allowed)
        self.field = field
        self.value = value
        self.allowed = allowed

    def __str__(self) -> str:
        return f"{self.field}={self.value!r} is not allowed: {self.allowed}"


class DatasetError(DaskScoreError, ValueError):
    """An input dataset cannot be listed, read or planned into mini-batches."""

    exit_code = 2


class EntryScriptError(DaskScoreError):
    """The entry script cannot be used: syntax error, import error, missing function.

    Parameters
    ----------
    script
        Path of the entry script.
    problem
        What is wrong, in one sentence.
    details
        Optional longer text (the user's traceback).
    """

    exit_code = 2

    def __init__(self, script: str, problem: str, details: str = "") -> None:
        super().__init__(script, problem, details)
        self.script = script
        self.problem = problem
        self.details = details

    def __str__(self) -> str:
        return f"entry script {self.script}: {self.problem}"


class ErrorThresholdExceeded(DaskScoreError):
    """A job ended with status ``Failed`` because a failure threshold was exceeded."""

    def __init__(self, reason: str, output_dir: str = "") -> None:
        super().__init__(reason, output_dir)
        self.reason = reason
        self.output_dir = output_dir

    def __str__(self) -> str:
        where = (f" (see {self.output_dir}/logs/job_result.txt)" if self.output_dir
                 else "")
        return f"{self.reason}{where}"


class JobError(DaskScoreError):
    """The job could not be run: the cluster or the output location failed."""


class MiniBatchError(DaskScoreError):
    """A partition of ``ds.map_partitions`` failed every one of its tries.

    Parameters
    ----------
    script
        The entry script, as configured.
    partition
        The partition's number in its collection.
    tries
        How many tries it had (``run_max_try``).
    error
        The last try's one-line error: the user's exception, file and line.
    details
        The last try's traceback (the user's frames), when there is one.
    """

    def __init__(
        self, script: str, partition: int, tries: int, error: str, details: str = ""
    ) -> None:
        super().__init__(script, partition, tries, error, details)
        self.script = script
        self.partition = partition
        self.tries = tries
        self.error = error
        self.details = details

    def __str__(self) -> str:
        plural = "try" if self.tries == 1 else "tries"
        return (
            f"{self.script}: partition {self.partition} failed after {self.tries} "
            f"{plural}: {self.error}"
        )


class UsageError(DaskScoreError):
    """Bad command line or job file."""

    exit_code = 2


class WorkspaceError(DaskScoreError):
    """A workspace, its config file or one of its registries cannot be used."""

    exit_code = 2


class NotRegisteredError(WorkspaceError, LookupError):
    """No datastore, dataset, model, experiment or run of that name (or version).

    Parameters
    ----------
    kind
        ``"datastore"``, ``"dataset"``, ``"model"``, ``"experiment"`` or ``"run"``.
    name
        The name (or run id) asked for.
    version
        The version asked for, when one was.
    known
        What is registered under that kind (or the versions of ``name``).
    workspace
        Where it was looked up.
    hint
        What to do next.
    """

    def __init__(self, kind: str, name: str, version: object = None,
                 known: tuple | list = (), workspace: str = "",
                 hint: str = "") -> None:
        super().__init__(kind, name, version, tuple(known), workspace, hint)
        self.kind = kind
        self.name = name
        self.version = version
        self.known = tuple(known)
        self.workspace = workspace
        self.hint = hint

    def __str__(self) -> str:
        what = f"{self.kind} {self.name!r}"
        if self.version is not None:
            what += f" version {self.version}"
            registered = "versions registered: "
        else:
            registered = f"{self.kind}s registered: "
        where = f" in workspace {self.workspace}" if self.workspace else ""
        shown = ", ".join(str(k) for k in self.known[:20]) or "none"
        if len(self.known) > 20:
            shown += f", ... ({len(self.known)} in all)"
        text = f"no {what}{where} ({registered}{shown})"
        return f"{text}; {self.hint}" if self.hint else text
