"""``azureml.core.Run`` (v1): the step's run, as an entry script sees it.

``Run.get_context()`` inside a step gives the step's run: what it logs and
uploads goes to the step's run folder (``<output>/logs/run/``, see
:mod:`daskscore.output.runlog`: one append-only events file per runner process,
merged when read), ``register_model`` registers an uploaded file or folder in
the step's workspace (the pipeline's, or that of the step's models). Outside a
step it gives an offline run that prints what it is asked to log, as the SDK's
offline run does.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from typing import Any, BinaryIO

from .. import entry_script
from ..errors import WorkspaceError
from ..output.runlog import RunLog, read_events, run_summary
from ..pipeline.pipeline import Experiment
from ..registry.workspace import Workspace
from ._hook import V1Class, not_provided, v1_attribute
from .model import Model

__all__ = ["RUN_ENV", "Run"]

_STEP_RUN: list[Run] = []  # this process's step run, once asked for
# a run handed to a plain script process (e.g. a pipeline's script step) as JSON:
# id, name, parent, experiment, folder, workspace (no credentials: a local run
# folder and workspace, or storage whose credentials the environment holds)
RUN_ENV = "DASKSCORE_RUN"


class _Where:
    """Where a run writes, and which experiment and workspace it belongs to."""

    def __init__(self, log: RunLog | None, experiment: str,
                 workspace_url: str | None, workspace_options: dict[str, Any]):
        self.log = log
        self.experiment_name = experiment
        self.workspace_url = workspace_url
        self.workspace_options = workspace_options
        self._workspace: Workspace | None = None

    def workspace(self) -> Workspace:
        if self._workspace is None:
            if not self.workspace_url:
                raise WorkspaceError(
                    "this run has no workspace: run the step in a pipeline "
                    "(Experiment(ws, name).submit(...)) or give it models=[...] of a "
                    "workspace, or open one with Workspace.from_config()")
            self._workspace = Workspace(self.workspace_url, self.workspace_options,
                                        create=False)
        return self._workspace


class _OfflineExperiment:
    name = "offline"

    @property
    def workspace(self) -> Workspace:
        raise WorkspaceError(
            "an offline run (Run.get_context() outside a step) has no workspace; "
            "use Workspace.from_config() or run the script as a step")


class Run(metaclass=V1Class):
    """A run: the step's (``Run.get_context()``), a child of it, or offline."""

    v1_name = "azureml.core.Run"

    def __init__(self, experiment: Any, run_id: str, **kwargs: Any) -> None:
        raise not_provided("azureml.core.Run(experiment, run_id) (a run by id; use "
                           "Run.get_context() inside a step, or PipelineRun.get)")

    @classmethod
    def _make(cls, where: _Where, run_id: str, parent: Run | None,
              name: str | None = None) -> Run:
        run = object.__new__(cls)
        run._where, run.id, run._parent = where, run_id, parent
        run.name = run.display_name = name or run_id
        # an offline run keeps its events in memory (shared with its children)
        run._status, run._tags = "Running", {}
        run._offline = parent._offline if parent is not None else []
        run.properties = {}
        return run

    @classmethod
    def get_context(cls, allow_offline: bool = True, **kwargs: Any) -> Run:
        """The step's run inside a step; else an offline run (``allow_offline``)."""
        context = entry_script._CONTEXT.get("run") or _env_context()
        if context:
            if not _STEP_RUN:
                _STEP_RUN.append(_step_run(context))
            return _STEP_RUN[0]
        if not allow_offline:
            raise WorkspaceError("Run.get_context(allow_offline=False) outside a "
                                 "step: there is no run; run the script as a step")
        where = _Where(None, "offline", None, {})
        return cls._make(where, f"OfflineRun_{uuid.uuid4()}", None)

    # -- identity ----------------------------------------------------------------------
    @property
    def parent(self) -> Run | None:
        return self._parent

    @property
    def experiment(self) -> Any:
        """The experiment (``.name``, ``.workspace``)."""
        where = self._where
        if where.log is None:
            return _OfflineExperiment()
        if not where.workspace_url:
            return _NoWorkspaceExperiment(where.experiment_name, where)
        return Experiment(where.workspace(), where.experiment_name)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, status={self._status!r})"

    def __getattr__(self, name: str) -> Any:
        raise v1_attribute(self.v1_name, name)

    # -- logging -----------------------------------------------------------------------
    def _event(self, event: str, **values: Any) -> None:
        log = self._where.log
        if log is None:
            what = f"{values.get('kind')} metric" if event == "metric" else event
            print(f"Attempted to log {what} {values.get('name', '')}:\n"
                  f"{values.get('value')}")
            self._offline.append({"run": self.id, "event": event, **values})
            return
        log.append(self.id, event, **values)

    def log(self, name: str, value: Any, description: str = "", step: Any = None
            ) -> None:
        """Log a value; logged again under one name, the metric is the list."""
        self._event("metric", name=str(name), value=value, kind="scalar")

    def log_list(self, name: str, value: list[Any], description: str = "") -> None:
        self._event("metric", name=str(name), value=list(value), kind="list")

    def log_row(self, name: str, description: str | None = None, **kwargs: Any
                ) -> None:
        """One row of a table metric: ``log_row("fit", store=1, mape=0.2)``."""
        self._event("metric", name=str(name), value=dict(kwargs), kind="row")

    def log_table(self, name: str, value: dict[str, list[Any]],
                  description: str = "") -> None:
        for row in zip(*value.values(), strict=False):
            self.log_row(name, **dict(zip(value, row, strict=False)))

    def get_metrics(self, name: str | None = None, recursive: bool = False
                    ) -> dict[str, Any]:
        """The metrics logged to this run by every process (``recursive``: by
        run id, this run's and its children's)."""
        runs = self._runs()
        mine = runs.get(self.id, {}).get("metrics", {})
        if recursive:
            ids = [self.id, *[i for i, r in runs.items() if _below(runs, i, self.id)]]
            return {i: _named(runs.get(i, {}).get("metrics", {}), name) for i in ids}
        return _named(mine, name)

    def _runs(self) -> dict[str, dict[str, Any]]:
        log = self._where.log
        if log is None:
            return run_summary(self._offline)
        return run_summary(read_events(log.folder_url, log.storage_options))

    # -- tags and status ---------------------------------------------------------------
    def tag(self, key: str, value: Any = None) -> None:
        self._tags[str(key)] = value
        self._event("tag", name=str(key), value=value)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in dict(tags).items():
            self.tag(key, value)

    def get_tags(self) -> dict[str, Any]:
        return {**self._runs().get(self.id, {}).get("tags", {}), **self._tags}

    def get_status(self) -> str:
        return self._status

    def complete(self, _set_status: bool = True) -> None:
        self._set_status("Completed")

    def fail(self, error_details: Any = None, **kwargs: Any) -> None:
        self._set_status("Failed")

    def cancel(self) -> None:
        self._set_status("Canceled")

    def _set_status(self, status: str) -> None:
        self._status = status
        if self._where.log is not None:
            self._event("status", value=status)

    # -- children ----------------------------------------------------------------------
    def child_run(self, name: str | None = None, run_id: str | None = None,
                  outputs: Any = None) -> Run:
        """A child run with the same API (its metrics and files its own)."""
        child_id = run_id or f"{self.id}_{uuid.uuid4().hex[:8]}"
        child = Run._make(self._where, child_id, self, name)
        if self._where.log is not None:
            self._where.log.append(child_id, "start", parent=self.id, name=name)
        else:
            self._offline.append({"run": child_id, "event": "start",
                                  "parent": self.id, "name": name})
        return child

    def get_children(self, **kwargs: Any) -> list[Run]:
        runs = self._runs()
        return [Run._make(self._where, i, self, r.get("name"))
                for i, r in runs.items() if r.get("parent") == self.id]

    # -- files and models --------------------------------------------------------------
    def upload_file(self, name: str, path_or_stream: str | os.PathLike | BinaryIO,
                    datastore_name: str | None = None) -> None:
        """Keep a file (a path or a binary stream) as ``name`` of this run."""
        log = self._where.log
        if log is None:
            print(f"Attempted to upload file {name} (an offline run keeps nothing)")
            return
        log.upload(self.id, name, path_or_stream)

    def upload_folder(self, name: str, path: str | os.PathLike, **kwargs: Any) -> None:
        root = os.fspath(path)
        for folder, _dirs, files in os.walk(root):
            for file in sorted(files):
                full = os.path.join(folder, file)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                self.upload_file(f"{name.rstrip('/')}/{rel}", full)

    def get_file_names(self) -> list[str]:
        return list(self._runs().get(self.id, {}).get("files", []))

    def download_file(self, name: str, output_file_path: str | None = None,
                      **kwargs: Any) -> None:
        log = self._require_log("download_file")
        target = output_file_path or os.path.basename(name)
        if os.path.isdir(target):
            target = os.path.join(target, os.path.basename(name))
        with tempfile.TemporaryDirectory(prefix="daskscore-run-") as folder:
            source = log.fetch(self.id, name, folder)
            with open(source, "rb") as src, open(target, "wb") as dst:
                dst.write(src.read())

    def register_model(self, model_name: str, model_path: str | None = None,
                       tags: Any = None, properties: Any = None,
                       model_framework: str | None = None,
                       model_framework_version: str | None = None,
                       description: str | None = None, **kwargs: Any) -> Model:
        """Register what this run uploaded as ``model_path`` (a file, or a folder
        prefix of uploaded files) in the workspace's model registry."""
        log = self._require_log("register_model")
        # fetched into a folder of its own, removed once the registry has its copy
        with tempfile.TemporaryDirectory(prefix="daskscore-model-") as folder:
            local = log.fetch(self.id, model_path or model_name, folder)
            return Model.register(self._where.workspace(), local, model_name,
                                  tags=tags, properties=properties,
                                  description=description,
                                  model_framework=model_framework,
                                  model_framework_version=model_framework_version)

    def _require_log(self, what: str) -> RunLog:
        if self._where.log is None:
            raise WorkspaceError(f"run.{what}() needs a step's run; an offline run "
                                 "(outside a step) keeps no files")
        return self._where.log


class _NoWorkspaceExperiment:
    """The experiment of a step run without a workspace (``step.run()`` alone)."""

    def __init__(self, name: str, where: _Where) -> None:
        self.name = name
        self._where = where

    @property
    def workspace(self) -> Workspace:
        return self._where.workspace()


def _step_run(context: dict[str, Any]) -> Run:
    agent = entry_script._CONTEXT.get("agent_name") or "local"
    # one writer per process and run: a kept runner (same pid) serving a next
    # job of the same output folder must not write over the parts it wrote
    log = RunLog(context["folder"], context.get("storage_options"),
                 f"{agent}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    where = _Where(log, context.get("experiment") or "default",
                   context.get("workspace"), context.get("workspace_options") or {})
    parent = None
    if context.get("parent"):
        parent = Run._make(where, context["parent"], None)
    return Run._make(where, context["id"], parent, context.get("name"))


def _env_context() -> dict[str, Any]:
    text = os.environ.get(RUN_ENV)
    if not text:
        return {}
    try:
        context = json.loads(text)
    except ValueError:
        raise WorkspaceError(f"{RUN_ENV} is not JSON: {text[:80]!r}") from None
    return context if isinstance(context, dict) and context.get("folder") else {}


def _below(runs: dict[str, dict[str, Any]], run_id: str, ancestor: str) -> bool:
    seen = set()
    parent = runs.get(run_id, {}).get("parent")
    while parent and parent not in seen:
        if parent == ancestor:
            return True
        seen.add(parent)
        parent = runs.get(parent, {}).get("parent")
    return False


def _named(metrics: dict[str, Any], name: str | None) -> dict[str, Any]:
    if name is None:
        return dict(metrics)
    return {name: metrics[name]} if name in metrics else {}
