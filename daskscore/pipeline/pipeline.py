"""Pipelines: steps run in order, submitted to an experiment; run history; reuse.

``Experiment(ws, name).submit(Pipeline(ws, steps))`` returns a :class:`PipelineRun`
at once; the steps run one after the other in a background thread (each
``step.run()`` starts its own embedded cluster unless a ``client`` is given). A
step's output can be the next step's input through :class:`PipelineData`.

Run history is one JSON file per run, rewritten at every state change::

    <workspace>/experiments/<experiment>/runs/<run id>.json   status, times, steps
    <workspace>/experiments/<experiment>/runs/<run id>.log    the run's output
    <workspace>/reuse/<step fingerprint>.json                 last successful output

Reuse (``allow_reuse=True``, the default): a step whose fingerprint (script
bytes, settings, arguments, model versions, input content) equals that of an
earlier successful run, writing to the same output which has not been written
since, is not run again; its earlier output is the step's output.
``allow_reuse=False`` (or ``submit(..., regenerate_outputs=True)``) always
recomputes, discarding any committed mini-batches of an earlier run.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from .._protocol import LOGS_DIR
from ..config import check_name
from ..datasets import dataset_from_format
from ..errors import ConfigError, DaskScoreError, JobError, NotRegisteredError
from ..output.runlog import RUN_FOLDER, read_events, run_summary, run_tree
from ..output.store import StateStore, write_atomic
from ..progress import TextProgress
from ..registry._common import REGISTRY_NAME, utc_now
from ..registry._folder import WorkspaceFolder as Workspace
from ..registry.datastore import DataPath, Datastore
from ..storage import url_to_fs

__all__ = ["Experiment", "Pipeline", "PipelineData", "PipelineRun", "StepRun"]

RUNNING, COMPLETED, FAILED, NOT_STARTED = "Running", "Completed", "Failed", "NotStarted"
_FINAL = (COMPLETED, FAILED)
_HOST = socket.gethostname()
# a collected output's extension -> its dataset format (as_tabular_dataset)
_TABLE_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv",
                  ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def _norm(path: str) -> str:
    path = os.fspath(path)
    if "://" not in path:
        path = os.path.abspath(os.path.expanduser(path))
    return path.rstrip("/")


# -- data between steps -------------------------------------------------------------


class PipelineData:
    """A step's output folder on a datastore, which later steps can read.

    Pass it as ``ParallelRunStep(output=...)``; read it in a later step with
    :meth:`as_dataset` (files), :meth:`as_tabular_dataset` (the collected table)
    or :meth:`as_input`.

    Parameters
    ----------
    name
        Name of the output (e.g. ``"inferences"``).
    datastore
        Where it is written; default: the default datastore of
        ``Workspace.from_config()``.
    output_path_on_compute
        Folder on the datastore; default ``pipelinedata/<name>``.
    """

    def __init__(self, name: str, datastore: Datastore | None = None,
                 output_path_on_compute: str | None = None) -> None:
        self.name = check_name("name", name, REGISTRY_NAME)
        if datastore is None:
            datastore = Workspace.from_config().get_default_datastore()
        if not isinstance(datastore, Datastore):
            raise ConfigError("datastore", datastore,
                              "a ds.Datastore, e.g. ws.get_default_datastore()")
        self.datastore = datastore
        self.output_path_on_compute = output_path_on_compute or f"pipelinedata/{name}"
        self._data_path = DataPath(datastore, self.output_path_on_compute)

    @property
    def path(self) -> str:
        """The output folder (local path or URL)."""
        return self._data_path.url.rstrip("/")

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options of the datastore (credential included)."""
        return self._data_path.storage_options

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return (f"PipelineData(name={self.name!r}, datastore={self.datastore.name!r}, "
                f"output_path_on_compute={self.output_path_on_compute!r})")

    def _mark(self, dataset: Any) -> Any:
        dataset.pipeline_data = self
        return dataset

    def as_dataset(self, pattern: str = "*") -> Any:
        """The output's files as a FileDataset: by default the collected output file
        (the only file at the top of a step's output folder); ``"outputs/**"``
        for the files a ``summary_only`` script wrote."""
        return self._mark(dataset_from_format(
            "files", self._join(pattern), self.storage_options or None))

    def as_tabular_dataset(self, pattern: str = "*.parquet", separator: str = ",",
                           header: bool = True) -> Any:
        """The collected output table as a TabularDataset (``.parquet``, ``.csv``,
        ``.jsonl``: by the pattern's extension)."""
        ext = os.path.splitext(pattern)[1].lower()
        fmt = _TABLE_FORMATS.get(ext)
        if fmt is None:
            raise ConfigError("pattern", pattern,
                              "a pattern ending in .parquet, .csv or .jsonl (use "
                              "as_dataset() for text output)")
        read_options = {"separator": separator, "header": header}
        return self._mark(dataset_from_format(
            fmt, self._join(pattern), self.storage_options or None,
            read_options if fmt == "csv" else None))

    def as_input(self, name: str | None = None) -> Any:
        """:meth:`as_dataset` as a named input (``EntryScript().inputs[name]``)."""
        return self.as_dataset().as_named_input(name or self.name)

    def _join(self, pattern: str) -> str:
        if "://" in self.path:
            return f"{self.path}/{pattern}"
        return os.path.join(self.path, pattern)


# -- pipelines -------------------------------------------------------------------------


class Pipeline:
    """Steps run one after the other; a step may read an earlier step's output.

    Parameters
    ----------
    workspace
        The workspace whose run history records the runs.
    steps
        ``ParallelRunStep`` objects (anything with ``name``, ``output``,
        ``allow_reuse``, ``fingerprint()`` and ``run(client, progress)``).
    description
        Free text kept with each run.
    """

    def __init__(self, workspace: Workspace, steps: Sequence[Any],
                 description: str | None = None) -> None:
        if not isinstance(workspace, Workspace):
            raise ConfigError("workspace", workspace, "a ds.Workspace")
        steps = list(steps or [])
        if not steps:
            raise ConfigError("steps", steps, "a non-empty list of steps")
        for step in steps:
            if not all(hasattr(step, a) for a in ("name", "run", "fingerprint")):
                raise ConfigError("steps", step, "ParallelRunStep objects")
        names = [s.name for s in steps]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError("steps", names,
                              f"steps with distinct names (repeated: {duplicates})")
        self.workspace = workspace
        self.steps = steps
        self.description = description
        self._check_order()

    def _check_order(self) -> None:
        outputs = {_norm(s.output): i for i, s in enumerate(self.steps)
                   if getattr(s, "output", None)}
        for i, step in enumerate(self.steps):
            for dataset in [*getattr(step, "inputs", []),
                            *getattr(step, "side_inputs", [])]:
                data = getattr(dataset, "pipeline_data", None)
                if data is None:
                    continue
                producer = outputs.get(_norm(data.path))
                if producer is None:
                    raise ConfigError(
                        "steps", [s.name for s in self.steps],
                        f"step {step.name!r} reads PipelineData {data.name!r}, which "
                        "no step of this pipeline writes; add the step that "
                        "writes it (output=...)")
                if producer >= i:
                    raise ConfigError(
                        "steps", [s.name for s in self.steps],
                        f"step {step.name!r} reads the output of step "
                        f"{self.steps[producer].name!r}, which comes later; list "
                        f"{self.steps[producer].name!r} first")

    def submit(self, experiment_name: str, **kwargs: Any) -> PipelineRun:
        """Shorthand for ``Experiment(workspace, experiment_name).submit(self)``."""
        return Experiment(self.workspace, experiment_name).submit(self, **kwargs)

    def __repr__(self) -> str:
        return f"Pipeline(steps={[s.name for s in self.steps]})"


class Experiment:
    """A named group of runs in a workspace.

    ``Experiment(ws, "digit_identification").submit(pipeline)``.
    """

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = check_name("name", name, REGISTRY_NAME)

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r}, workspace={self.workspace.url!r})"

    def submit(self, config: Pipeline, tags: Mapping[str, str] | None = None, *,
               regenerate_outputs: bool = False, client: Any = None) -> PipelineRun:
        """Start the pipeline in the background; returns its run at once.

        Parameters
        ----------
        config
            The :class:`Pipeline`.
        tags
            Free-form labels kept in the run history.
        regenerate_outputs
            Recompute every step, even those that could be reused.
        client
            A ``distributed.Client`` to run the steps on; default an embedded
            cluster per step.
        """
        if not isinstance(config, Pipeline):
            raise ConfigError("config", config, "a ds.Pipeline")
        run = PipelineRun._new(self, config, dict(tags or {}))
        run._start(config, regenerate_outputs, client)
        return run

    def get_runs(self) -> list[PipelineRun]:
        """The experiment's runs, newest first."""
        runs = []
        for run_id in self.workspace._list_names("experiments", self.name, "runs",
                                                 suffix=".json"):
            record = self.workspace._read_json("experiments", self.name, "runs",
                                               f"{run_id}.json")
            if record:
                runs.append(PipelineRun._loaded(self, record))
        return sorted(runs, key=_submission_order, reverse=True)


# -- runs ------------------------------------------------------------------------------


class StepRun:
    """One step of a pipeline run, as recorded (``run.get_steps()``).

    Attributes
    ----------
    name, status
        The step's name and ``NotStarted``/``Running``/``Completed``/``Failed``.
    reused
        Whether an earlier run's output was reused instead of running the step.
    output_dir, output_file
        Where the step's output is.
    result
        The ``StepRunResult`` when the step ran in this process, else None.
    details
        Everything recorded (counts, times, fingerprint, reason).
    """

    def __init__(self, details: dict[str, Any], result: Any = None) -> None:
        self.details = dict(details)
        self.name: str = details["name"]
        self.status: str = details["status"]
        self.reused: bool = bool(details.get("reused"))
        self.output_dir: str | None = details.get("output_dir")
        self.output_file: str | None = details.get("output_file")
        self.result = result

    def history(self) -> dict[str, dict[str, Any]]:
        """The step's run and its child runs as logged by the script
        (``Run.get_context()``): metrics, tags, status and uploaded files, by
        run id, merged from every runner process."""
        run_id = self.run_id
        if not run_id or not self.output_dir:
            return {}
        folder = f"{str(self.output_dir).rstrip('/')}/{LOGS_DIR}/{RUN_FOLDER}"
        runs = run_tree(run_summary(read_events(folder)), run_id)
        if runs.get(run_id, {}).get("status") == RUNNING:
            runs[run_id]["status"] = self.status  # the step's, unless it said
        return runs

    def get_metrics(self, name: str | None = None,
                    recursive: bool = False) -> dict[str, Any]:
        """The metrics the step's script logged to its run (``recursive``: by run
        id, with those of its child runs)."""
        runs = self.history()
        if recursive:
            return {i: _only(r["metrics"], name) for i, r in runs.items()}
        return _only(runs.get(self.run_id, {}).get("metrics", {}), name)

    @property
    def run_id(self) -> str | None:
        """The id of the step's run (that of the reused run for a reused step)."""
        if self.reused and self.details.get("reused_from"):
            return step_run_id(self.details["reused_from"], self.name)
        return self.details.get("run_id")

    def __repr__(self) -> str:
        reused = ", reused" if self.reused else ""
        return f"StepRun(name={self.name!r}, status={self.status!r}{reused})"


def _only(metrics: dict[str, Any], name: str | None) -> dict[str, Any]:
    if name is None:
        return dict(metrics)
    return {name: metrics[name]} if name in metrics else {}


class _RunOutput:
    """The text a run prints (a file-like sink for TextProgress), kept in memory."""

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._changed = threading.Condition()

    def write(self, text: str) -> int:
        with self._changed:
            self._chunks.append(text)
            self._changed.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        with self._changed:
            return "".join(self._chunks)

    def wait(self, seen: int, timeout_s: float) -> None:
        with self._changed:
            if len(self._chunks) == seen:
                self._changed.wait(timeout_s)

    def since(self, seen: int) -> tuple[str, int]:
        with self._changed:
            return "".join(self._chunks[seen:]), len(self._chunks)


class PipelineRun:
    """A submitted pipeline: its status, its steps and its output.

    Returned by ``Experiment.submit``; ``PipelineRun.get(ws, run_id)`` loads one
    from the run history (in any process).
    """

    def __init__(self, experiment: Experiment, run_id: str) -> None:
        record = experiment.workspace._read_json("experiments", experiment.name, "runs",
                                                 f"{run_id}.json")
        if record is None:
            raise NotRegisteredError(
                "run", run_id, known=[r.id for r in experiment.get_runs()][:20],
                workspace=experiment.workspace.url,
                hint="list runs with 'daskscore runs list'")
        self._setup(experiment, record)

    def _setup(self, experiment: Experiment, record: dict[str, Any]) -> None:
        self.experiment = experiment
        self.workspace = experiment.workspace
        self.id: str = record["run_id"]
        self._record = record
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._output: _RunOutput | None = None
        self._results: dict[str, Any] = {}

    @classmethod
    def _loaded(cls, experiment: Experiment, record: dict[str, Any]) -> PipelineRun:
        run = object.__new__(cls)
        run._setup(experiment, record)
        return run

    @classmethod
    def get(cls, workspace: Workspace, run_id: str) -> PipelineRun:
        """The run ``run_id`` of any experiment of ``workspace``.

        Raises
        ------
        NotRegisteredError
            No such run.
        """
        for name in workspace._list_names("experiments"):
            record = workspace._read_json("experiments", name, "runs", f"{run_id}.json")
            if record is not None:
                return cls._loaded(Experiment(workspace, name), record)
        known = [r.id for r in list_runs(workspace)[:20]]
        raise NotRegisteredError("run", run_id, known=known, workspace=workspace.url,
                                 hint="list runs with 'daskscore runs list'")

    def __repr__(self) -> str:
        return (f"PipelineRun(id={self.id!r}, experiment={self.experiment.name!r}, "
                f"status={self.status!r})")

    # -- state -------------------------------------------------------------------------
    @classmethod
    def _new(cls, experiment: Experiment, pipeline: Pipeline,
             tags: dict[str, str]) -> PipelineRun:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        run_id = f"{experiment.name}_{stamp}_{uuid.uuid4().hex[:8]}"
        record = {
            "run_id": run_id, "experiment": experiment.name, "status": RUNNING,
            "submitted": utc_now(), "submitted_ns": time.time_ns(),
            "started": None, "ended": None,
            "duration_seconds": None, "tags": tags,
            "description": pipeline.description, "host": _HOST, "pid": os.getpid(),
            "error": None, "workspace": experiment.workspace.url,
            "steps": [{"name": s.name, "status": NOT_STARTED, "reused": False,
                       "output_dir": getattr(s, "output", None)}
                      for s in pipeline.steps],
        }
        run = cls._loaded(experiment, record)
        run._output = _RunOutput()
        run._save()
        return run

    def _save(self) -> None:
        with self._lock:
            record = dict(self._record)
            record["steps"] = [dict(s) for s in record["steps"]]
        ws = self.workspace
        ws._write_json(record, "experiments", self.experiment.name, "runs",
                       f"{self.id}.json")

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._record.update(changes)
        self._save()

    def _update_step(self, index: int, **changes: Any) -> None:
        with self._lock:
            self._record["steps"][index].update(changes)
        self._save()

    def _refresh(self) -> dict[str, Any]:
        """The latest record: in memory for a live run, else from the history."""
        if self._thread is None and self._record.get("status") not in _FINAL:
            record = self.workspace._read_json("experiments", self.experiment.name,
                                               "runs", f"{self.id}.json")
            if record is not None:
                self._record = record
        return self._record

    @property
    def status(self) -> str:
        """``Running``, then ``Completed`` or ``Failed``."""
        return _effective_status(self._refresh())

    def get_status(self) -> str:
        """Same as :attr:`status`."""
        return self.status

    def get_details(self) -> dict[str, Any]:
        """Everything recorded about the run (a copy): times, steps, error."""
        with self._lock:
            record = dict(self._refresh())
            record["steps"] = [dict(s) for s in record["steps"]]
        record["status"] = _effective_status(record)
        return record

    def get_steps(self) -> list[StepRun]:
        """The steps, in pipeline order."""
        return [StepRun(s, self._results.get(s["name"]))
                for s in self.get_details()["steps"]]

    def find_step_run(self, name: str) -> list[StepRun]:
        """The steps called ``name`` (a list, as in the original)."""
        return [s for s in self.get_steps() if s.name == name]

    def get_output(self) -> str:
        """What the run printed so far (also saved as ``<run id>.log``)."""
        if self._output is not None:
            return self._output.text()
        ws = self.workspace
        path = ws._path("experiments", self.experiment.name, "runs", f"{self.id}.log")
        try:
            return ws._fs.cat_file(path).decode("utf-8")
        except FileNotFoundError:
            return ""

    def wait_for_completion(self, show_output: bool = False,
                            timeout_seconds: float | None = None,
                            raise_on_error: bool = True,
                            stream: TextIO | None = None) -> str:
        """Block until the run ends; returns its final status.

        Parameters
        ----------
        show_output
            Print the run's output as it comes: each step's start, progress
            lines (mini-batches, items, failures, ETA) and end.
        timeout_seconds
            Give up waiting after this long (the run goes on) and return the
            current status.
        raise_on_error
            Raise :class:`~daskscore.JobError` when the run Failed.
        stream
            Where to print (default ``sys.stdout``).
        """
        out = stream or sys.stdout
        deadline = (None if timeout_seconds is None
                    else time.monotonic() + timeout_seconds)
        seen = 0
        last_status = None
        while True:
            status = self.status
            if self._output is not None:
                text, seen = self._output.since(seen)
                if text and show_output:
                    out.write(text)
                    out.flush()
            elif show_output and status != last_status:
                print(f"RunId: {self.id}  Status: {status}", file=out, flush=True)
            last_status = status
            if status in _FINAL:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return status
            if self._output is not None:
                self._output.wait(seen, 0.5)
            else:
                time.sleep(1.0)
        if self._thread is not None:
            self._thread.join()
            text, seen = self._output.since(seen)
            if show_output and text:
                out.write(text)
                out.flush()
        if status == FAILED and raise_on_error:
            raise JobError(f"run {self.id} Failed: {self.get_details().get('error')}")
        return status

    # -- the background work -----------------------------------------------------------
    def _print(self, text: str) -> None:
        assert self._output is not None
        self._output.write(text.rstrip("\n") + "\n")

    def _start(self, pipeline: Pipeline, regenerate: bool, client: Any) -> None:
        self._print(f"RunId: {self.id}")
        self._print(f"Experiment: {self.experiment.name}  Workspace: "
                    f"{self.workspace.url}")
        self._thread = threading.Thread(
            target=self._execute, args=(pipeline, regenerate, client),
            name=f"daskscore-run-{self.id}",
        )
        self._thread.start()

    def _execute(self, pipeline: Pipeline, regenerate: bool, client: Any) -> None:
        started = time.perf_counter()
        self._update(started=utc_now())
        error = None
        try:
            for index, step in enumerate(pipeline.steps):
                error = self._run_step(index, step, regenerate, client)
                if error:
                    break
        except BaseException as exc:  # noqa: BLE001 - recorded, never lost
            error = f"{type(exc).__name__}: {exc}"
            self._update(error_details=traceback.format_exc())
        status = FAILED if error else COMPLETED
        for index, step in enumerate(self._record["steps"]):
            if step["status"] == RUNNING:
                self._update_step(index, status=FAILED, reason=error)
        duration = time.perf_counter() - started
        self._print(f"Run {self.id}: {status} in {duration:.1f} s"
                    + (f": {error}" if error else ""))
        self._save_log()
        self._update(status=status, ended=utc_now(),
                     duration_seconds=round(duration, 3), error=error)

    def _save_log(self) -> None:
        ws = self.workspace
        path = ws._path("experiments", self.experiment.name, "runs", f"{self.id}.log")
        write_atomic(ws._fs, path, self.get_output().encode("utf-8"))

    def _run_step(self, index: int, step: Any, regenerate: bool,
                  client: Any) -> str | None:
        """Run (or reuse) one step; returns the error that stops the run, if any."""
        self._update_step(index, status=RUNNING, started=utc_now(),
                          run_id=step_run_id(self.id, step.name))
        self._print(f"Step {step.name}: started")
        try:
            fingerprint = step.fingerprint()
        except DaskScoreError as exc:
            return self._step_failed(index, step, f"{type(exc).__name__}: {exc}")
        self._update_step(index, fingerprint=fingerprint)
        reuse = getattr(step, "allow_reuse", True) and not regenerate
        if reuse:
            hit = _reusable(self.workspace, step, fingerprint)
            if hit is not None:
                self._update_step(index, status=COMPLETED, reused=True,
                                  reused_from=hit["run_id"], ended=utc_now(),
                                  **hit["summary"])
                where = hit["summary"].get("output_file") or step.output
                self._print(f"Step {step.name}: reused the output of run "
                            f"{hit['run_id']} (same script, settings, models and "
                            f"inputs): {where}")
                return None
        else:
            _discard_committed(step)
        try:
            progress = TextProgress(stream=self._output, interval_s=2.0)
            # the step's run, as Run.get_context() shows it to the script
            step._run_info = {"id": self._record["steps"][index]["run_id"],
                              "parent": self.id, "experiment": self.experiment.name,
                              "workspace": self.workspace}
            try:
                result = step.run(client=client, progress=progress)
            finally:
                step._run_info = None  # a later step.run() alone is its own run
        except DaskScoreError as exc:
            return self._step_failed(index, step, f"{type(exc).__name__}: {exc}")
        self._results[step.name] = result
        summary = _summary(result)
        self._update_step(index, status=result.status, ended=utc_now(), **summary)
        counts = (f"{result.succeeded_items} items succeeded, {result.failed_items} "
                  f"failed, {result.mini_batches} mini-batches, "
                  f"{result.elapsed_seconds:.1f} s")
        if result.status != COMPLETED:
            self._print(f"Step {step.name}: Failed: {result.reason} ({counts}); logs: "
                        f"{result.log_dir}/job_result.txt")
            return f"step {step.name!r} failed: {result.reason}"
        self._print(f"Step {step.name}: Completed ({counts})")
        if result.output_file:
            self._print(f"Step {step.name}: output {result.output_file}")
        _remember(self.workspace, step, fingerprint, self.id, summary)
        return None

    def _step_failed(self, index: int, step: Any, error: str) -> str:
        self._update_step(index, status=FAILED, ended=utc_now(), reason=error)
        self._print(f"Step {step.name}: Failed: {error}")
        return f"step {step.name!r} failed: {error}"


def step_run_id(run_id: str, step_name: str) -> str:
    """The id of a step's run (what ``Run.get_context().id`` gives its script)."""
    return f"{run_id}_{step_name}"


def _effective_status(record: dict[str, Any]) -> str:
    """The recorded status, or Failed for a run whose process has gone."""
    status = record.get("status", NOT_STARTED)
    if status in _FINAL or record.get("host") != _HOST:
        return status
    pid = record.get("pid")
    if pid == os.getpid() or not pid:
        return status
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return FAILED
    except OSError:
        pass
    return status


def _summary(result: Any) -> dict[str, Any]:
    return {
        "reason": result.reason,
        "output_dir": result.output_dir, "output_file": result.output_file,
        "total_items": result.total_items, "succeeded_items": result.succeeded_items,
        "failed_items": result.failed_items, "mini_batches": result.mini_batches,
        "failed_mini_batches": result.failed_mini_batches,
        "elapsed_seconds": round(result.elapsed_seconds, 3),
        "resumed_mini_batches": result.resumed_mini_batches,
    }


# -- reuse -----------------------------------------------------------------------------


def _report_digest(step: Any) -> str | None:
    """sha256 of the step output's logs/job_report.json, or None when missing."""
    try:
        fs, root = url_to_fs(step.output, getattr(step, "storage_options", None) or {})
        data = fs.cat_file(f"{root.rstrip('/')}/logs/job_report.json")
    except (FileNotFoundError, OSError, ValueError):
        return None
    return hashlib.sha256(data).hexdigest()


def _remember(workspace: Workspace, step: Any, fingerprint: str, run_id: str,
              summary: dict[str, Any]) -> None:
    digest = _report_digest(step)
    if digest is None:
        return
    workspace._write_json({
        "fingerprint": fingerprint, "step": step.name, "run_id": run_id,
        "output_dir": _norm(step.output), "report_sha256": digest,
        "summary": summary, "created": utc_now(),
    }, "reuse", f"{fingerprint}.json")


def _reusable(workspace: Workspace, step: Any, fingerprint: str) -> dict | None:
    """The earlier run whose output this step can take as is, if any.

    Only an output in the same place, untouched since (its job report is the one
    recorded), is reused: a later step reading it finds it where it looks.
    """
    record = workspace._read_json("reuse", f"{fingerprint}.json")
    if record is None or record.get("output_dir") != _norm(step.output):
        return None
    if _report_digest(step) != record.get("report_sha256"):
        return None
    return record


def _discard_committed(step: Any) -> None:
    """Forget an earlier run's committed mini-batches so everything is scored again."""
    store = StateStore(step.output, getattr(step, "storage_options", None) or {})
    if store.fs.exists(store.state):
        store.reset()


# -- history ---------------------------------------------------------------------------


def _submission_order(run: PipelineRun) -> tuple[str, int]:
    """Newest first: two runs submitted in the same second keep their order."""
    return run._record.get("submitted", ""), run._record.get("submitted_ns", 0)


def list_runs(workspace: Workspace, experiment: str | None = None) -> list[PipelineRun]:
    """Runs of one experiment or all, newest first."""
    names = [experiment] if experiment else workspace._list_names("experiments")
    runs: list[PipelineRun] = []
    for name in names:
        runs.extend(Experiment(workspace, name).get_runs())
    return sorted(runs, key=_submission_order, reverse=True)
