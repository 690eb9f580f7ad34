"""Azure ML v1 pipelines on daskscore: ``azureml.pipeline.core`` and ``.steps``.

The v1 objects are descriptions: ``PipelineParameter`` values, ``PipelineData``
folders and the steps that use them are resolved when the pipeline is
submitted (``Experiment.submit(pipeline, pipeline_parameters={...})``), into
daskscore's own ``ParallelRunStep``, :class:`~daskscore.pipeline.script_step.ScriptStep`
and :class:`~daskscore.Pipeline`. An output of a step is written where Azure ML
writes it on its datastore, ``azureml/<step run id>/<output name>/``, so that
``run.find_step_run(name)[0].get_output_data(name).download(local_path)`` puts
the collected file at ``<local_path>/azureml/<step run id>/<output name>/``.
"""

from __future__ import annotations

import inspect
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .. import config as _config
from .. import step as _step
from ..datasets import FileDataset, TabularDataset
from ..errors import ConfigError
from ..pipeline import pipeline as _core
from ..pipeline.script_step import ScriptStep
from ..registry.datastore import DataPath, Datastore
from ..storage import url_to_fs
from .compute import _ignored

__all__ = [
    "ParallelRunConfig",
    "ParallelRunStep",
    "Pipeline",
    "PipelineData",
    "PipelineParameter",
    "PipelineRun",
    "PortDataReference",
    "PythonScriptStep",
    "StepRun",
]

logger = logging.getLogger("daskscore.azureml")


class PipelineParameter:
    """A value given when the pipeline is submitted, ``default_value`` otherwise:
    ``Experiment.submit(pipeline, pipeline_parameters={name: value})``."""

    def __init__(self, name: str, default_value: Any) -> None:
        self.name = name
        self.default_value = default_value

    def __repr__(self) -> str:
        return (
            f"PipelineParameter(name={self.name!r}, "
            f"default_value={self.default_value!r})"
        )


class PipelineData:
    """A step's output folder, made for each run: ``azureml/<step run id>/<name>``
    on ``datastore`` (default: the workspace's)."""

    def __init__(
        self,
        name: str,
        datastore: Datastore | None = None,
        output_name: str | None = None,
        output_mode: str = "mount",
        output_path_on_compute: str | None = None,
        is_directory: bool = True,
        **_: Any,
    ) -> None:
        self.name = name
        self.datastore = datastore
        self.output_name = output_name or name
        self.output_mode = output_mode
        self.output_path_on_compute = output_path_on_compute
        self._producer: Any = None

    def __repr__(self) -> str:
        return f"PipelineData(name={self.name!r})"

    def as_dataset(self) -> PipelineData:
        return self

    def as_input(self, input_name: str | None = None) -> PipelineData:
        return self

    def as_mount(self) -> PipelineData:
        return self

    def as_download(self, *_: Any, **__: Any) -> PipelineData:
        return self


def _is_output(value: Any) -> bool:
    """A v1 step output: PipelineData or OutputFileDatasetConfig (data.py)."""
    return isinstance(value, PipelineData) or hasattr(value, "_output_folder")


class _Submission:
    """The values of one submission: parameters, step run ids, output folders."""

    def __init__(self, workspace: Any, parameters: Mapping[str, Any]) -> None:
        self.workspace = workspace
        self.parameters = dict(parameters or {})
        self.used: set[str] = set()
        self.step_ids: dict[str, str] = {}
        self.folders: dict[int, _core.PipelineData] = {}

    def value(self, value: Any) -> Any:
        """A parameter's value (recursively: a parameter of a dataset config)."""
        if isinstance(value, PipelineParameter):
            self.used.add(value.name)
            value = self.parameters.get(value.name, value.default_value)
        resolve = getattr(value, "_v1_value", None)
        return resolve(self) if resolve is not None else value

    def output(self, data: Any, step_id: str) -> _core.PipelineData:
        """The daskscore PipelineData of a v1 output, made once per submission."""
        made = self.folders.get(id(data))
        if made is None:
            datastore = getattr(data, "datastore", None) or (
                self.workspace.get_default_datastore()
            )
            made = _core.PipelineData(
                _core_name(data.name),
                datastore,
                output_path_on_compute=data._output_folder(step_id)
                if hasattr(data, "_output_folder")
                else f"azureml/{step_id}/{data.name}",
            )
            self.folders[id(data)] = made
        return made

    def folder_of(self, data: Any) -> str:
        made = self.folders.get(id(data))
        if made is None:
            raise ConfigError(
                "inputs",
                data,
                "an output of an earlier step of this "
                "pipeline (add the step that writes it)",
            )
        return made.path

    def argument(self, value: Any) -> str:
        """A script argument as a string: outputs and datasets become paths."""
        value = self.value(value)
        if _is_output(value):
            return self.folder_of(value)
        if isinstance(value, FileDataset | TabularDataset):
            path = value.path[0] if isinstance(value.path, list) else value.path
            return os.fspath(path)
        if isinstance(value, DataPath):
            return value.url
        return str(value)

    def dataset(self, value: Any) -> Any:
        """A step input as a daskscore dataset."""
        value = self.value(value)
        if _is_output(value):
            made = self.folders.get(id(value))
            if made is None:
                raise ConfigError("inputs", value, "an output of an earlier step")
            return made.as_dataset().as_named_input(value.name)
        if isinstance(value, DataPath):
            return FileDataset(value.url, value.storage_options or None)
        return value


def _core_name(name: str) -> str:
    return name if name[:1].isalnum() else f"o{name}"


class ParallelRunConfig:
    """``ParallelRunConfig`` as in v1: ``environment`` and ``compute_target`` are
    accepted and ignored; any value may be a :class:`PipelineParameter`."""

    _IGNORED = ("environment", "compute_target", "description", "docker_configuration")

    def __init__(self, **settings: Any) -> None:
        for key in self._IGNORED:
            if settings.get(key) is not None:
                _ignored(f"ParallelRunConfig({key}=...)")
        self.settings = settings
        for key, value in settings.items():
            setattr(self, key, value)
        # checked now with the parameters' defaults, as v1 checks it
        self._build(_Submission(None, {}))

    def _build(self, submission: _Submission) -> _config.ParallelRunConfig:
        known = set(inspect.signature(_config.ParallelRunConfig).parameters)
        values = {
            k: submission.value(v)
            for k, v in self.settings.items()
            if k not in self._IGNORED
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                unknown[0],
                values[unknown[0]],
                f"a ParallelRunConfig field: {sorted(known)}",
            )
        return _config.ParallelRunConfig(**values)


class _V1Step:
    """What v1 steps share: name, inputs, outputs, arguments, allow_reuse."""

    def __init__(
        self,
        name: str,
        inputs: Sequence[Any] | None,
        outputs: Sequence[Any],
        arguments: Sequence[Any] | None,
        allow_reuse: bool,
        **ignored: Any,
    ) -> None:
        for key in ("compute_target", "runconfig", "environment"):
            if ignored.get(key) is not None:
                _ignored(f"{type(self).__name__}({key}=...)")
        self.name = name
        self.inputs = list(inputs or [])
        self.outputs = [o for o in outputs if o is not None]
        self.arguments = list(arguments or [])
        self.allow_reuse = allow_reuse
        for output in self.outputs:
            output._producer = self

    def _upstream(self) -> list[_V1Step]:
        found = []
        for value in [*self.inputs, *self.arguments, *getattr(self, "side_inputs", [])]:
            producer = getattr(value, "_producer", None)
            if producer is not None and producer is not self:
                found.append(producer)
        return found


class ParallelRunStep(_V1Step):
    """v1's ``ParallelRunStep``: a daskscore ``ParallelRunStep`` at submission."""

    def __init__(
        self,
        name: str,
        parallel_run_config: ParallelRunConfig,
        inputs: Sequence[Any],
        output: Any = None,
        side_inputs: Sequence[Any] | None = None,
        arguments: Sequence[Any] | None = None,
        allow_reuse: bool = True,
        models: Sequence[Any] | None = None,
    ) -> None:
        _config.check_name("name", name, _step.STEP_NAME)
        if not isinstance(
            parallel_run_config, ParallelRunConfig | _config.ParallelRunConfig
        ):
            raise ConfigError(
                "parallel_run_config",
                parallel_run_config,
                "a ParallelRunConfig (azureml.pipeline.steps)",
            )
        super().__init__(name, inputs, [output], arguments, allow_reuse)
        self.parallel_run_config = parallel_run_config
        self.output = output
        self.side_inputs = list(side_inputs or [])
        self.models = list(models or [])

    def _build(self, submission: _Submission, step_id: str) -> _step.ParallelRunStep:
        config = self.parallel_run_config
        if isinstance(config, ParallelRunConfig):
            config = config._build(submission)
        output = (
            submission.output(self.output, step_id) if self.output is not None else None
        )
        return _step.ParallelRunStep(
            name=self.name,
            parallel_run_config=config,
            inputs=[submission.dataset(i) for i in self.inputs],
            output=output,
            arguments=[submission.argument(a) for a in self.arguments],
            side_inputs=[submission.dataset(i) for i in self.side_inputs],
            models=self.models,
            allow_reuse=self.allow_reuse,
        )


class PythonScriptStep(_V1Step):
    """v1's ``PythonScriptStep``: runs the script as a process, in pipeline order."""

    def __init__(
        self,
        script_name: str,
        name: str | None = None,
        arguments: Sequence[Any] | None = None,
        compute_target: Any = None,
        runconfig: Any = None,
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        source_directory: str | None = None,
        allow_reuse: bool = True,
        **ignored: Any,
    ) -> None:
        super().__init__(
            name or os.path.splitext(os.path.basename(script_name))[0],
            inputs,
            list(outputs or []),
            arguments,
            allow_reuse,
            compute_target=compute_target,
            runconfig=runconfig,
            **ignored,
        )
        self.script_name = script_name
        self.source_directory = source_directory

    def _build(self, submission: _Submission, step_id: str) -> ScriptStep:
        outputs = [submission.output(o, step_id) for o in self.outputs]
        logs = submission.workspace.get_default_datastore().path(
            f"azureml/{step_id}/logs"
        )
        return ScriptStep(
            self.name,
            self.script_name,
            self.source_directory,
            arguments=[submission.argument(a) for a in self.arguments],
            inputs=[submission.dataset(i) for i in self.inputs],
            outputs=outputs,
            log_dir=logs.url,
        )


def _ordered(steps: Sequence[Any]) -> list[Any]:
    """The steps and those whose outputs they read, producers first (stable)."""
    out: list[Any] = []
    visiting: set[int] = set()

    def visit(step: Any) -> None:
        if any(s is step for s in out):
            return
        if id(step) in visiting:
            raise ConfigError(
                "steps",
                [s.name for s in steps],
                f"steps without a cycle (step {step.name!r} reads its own output)",
            )
        visiting.add(id(step))
        for producer in getattr(step, "_upstream", list)():
            visit(producer)
        out.append(step)

    for step in steps:
        visit(step)
    return out


class Pipeline:
    """v1's ``Pipeline(workspace, steps)``: the steps and the steps they depend on,
    run in data order when submitted."""

    def __init__(
        self,
        workspace: Any,
        steps: Sequence[Any],
        description: str | None = None,
        **_: Any,
    ) -> None:
        self.workspace = workspace
        self.steps = _ordered(list(steps or []))
        self.description = description

    def __repr__(self) -> str:
        return f"Pipeline(steps={[s.name for s in self.steps]})"

    def validate(self) -> list:
        return []

    def _resolve(
        self, parameters: Mapping[str, Any] | None
    ) -> tuple[_core.Pipeline, dict[str, tuple[str, list[Any]]]]:
        """The daskscore pipeline of one submission, and each step's run id and
        outputs."""
        submission = _Submission(self.workspace, parameters or {})
        built, ids = [], {}
        for step in self.steps:
            if not isinstance(step, _V1Step):
                built.append(step)
                continue
            step_id = str(uuid.uuid4())
            built.append(step._build(submission, step_id))
            ids[step.name] = (step_id, step.outputs)
        unused = sorted(set(submission.parameters) - submission.used)
        if unused:
            raise ConfigError(
                "pipeline_parameters",
                unused,
                "names of PipelineParameters the pipeline uses",
            )
        pipeline = _core.Pipeline(self.workspace, built, description=self.description)
        return pipeline, ids

    def submit(
        self, experiment_name: str, pipeline_parameters: Any = None, **kwargs: Any
    ) -> PipelineRun:
        experiment = _core.Experiment(self.workspace, experiment_name)
        return submit(
            experiment, self, pipeline_parameters=pipeline_parameters, **kwargs
        )


_clients: list[Any] = []


def _current_client() -> Any:
    """The current Dask cluster: the notebook's ``distributed.Client``, else the
    scheduler of dask's ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``),
    connected once; else None (each step starts an embedded cluster)."""
    import dask.config
    from distributed import Client, default_client

    try:
        return default_client()
    except ValueError:
        pass
    address = dask.config.get("scheduler-address", None)
    if not address:
        return None
    if not _clients:
        logger.info("daskscore.azureml: running on the Dask cluster at %s", address)
        _clients.append(Client(address))
    return _clients[0]


def submit(
    experiment: _core.Experiment,
    config: Any,
    tags: Mapping[str, str] | None = None,
    pipeline_parameters: Mapping[str, Any] | None = None,
    regenerate_outputs: bool = False,
    **_: Any,
) -> PipelineRun:
    """Submit a v1 or daskscore pipeline to ``experiment`` on the current cluster."""
    ids: dict[str, tuple[str, list[Any]]] = {}
    if isinstance(config, Pipeline):
        config, ids = config._resolve(pipeline_parameters)
    elif pipeline_parameters:
        raise ConfigError(
            "pipeline_parameters",
            pipeline_parameters,
            "only with a pipeline built from azureml.pipeline names",
        )
    run = _core.Experiment.submit(
        experiment,
        config,
        tags,
        regenerate_outputs=regenerate_outputs,
        client=_current_client(),
    )
    return PipelineRun(run, ids)


class PortDataReference:
    """A step output on its datastore: ``.path_on_datastore``, ``.download()``."""

    def __init__(self, name: str, datastore: Datastore, path_on_datastore: str) -> None:
        self.name = name
        self.datastore = datastore
        self.datastore_name = datastore.name
        self.path_on_datastore = path_on_datastore

    def __repr__(self) -> str:
        return (
            f"PortDataReference(name={self.name!r}, datastore={self.datastore_name!r}, "
            f"path_on_datastore={self.path_on_datastore!r})"
        )

    def download(
        self,
        local_path: str | os.PathLike,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> str:
        """Copy the output into ``<local_path>/<path_on_datastore>``; returns that
        folder."""
        source = self.datastore.path(self.path_on_datastore)
        fs, root = url_to_fs(source.url, source.storage_options)
        target = os.path.join(os.fspath(local_path), *self.path_on_datastore.split("/"))
        copied = 0
        for path in sorted(fs.find(root)):
            rel = path[len(root.rstrip("/")) + 1 :]
            if rel.split("/", 1)[0] in (".daskscore",):
                continue
            local = os.path.join(target, *rel.split("/"))
            if os.path.exists(local) and not overwrite:
                continue
            os.makedirs(os.path.dirname(local), exist_ok=True)
            fs.get_file(path, local)
            copied += 1
        if show_progress:
            print(f"Downloaded {copied} files of {self.name} to {target}")
        return target


class StepRun:
    """A step of a v1 pipeline run: ``get_output_data(name)``, ``get_metrics()``."""

    def __init__(
        self,
        run: PipelineRun,
        step: _core.StepRun,
        step_id: str | None,
        outputs: list[Any],
    ) -> None:
        self._run = run
        self._step = step
        self.name = step.name
        self.id = step_id or f"{run.id}_{step.name}"
        self._outputs = {o.name: o for o in outputs}

    def __repr__(self) -> str:
        return (
            f"StepRun(name={self.name!r}, id={self.id!r}, status={self.get_status()!r})"
        )

    @property
    def status(self) -> str:
        return self.get_status()

    def get_status(self) -> str:
        return self._run.find_core_step(self.name).status

    def get_details(self) -> dict[str, Any]:
        return dict(self._run.find_core_step(self.name).details)

    def get_metrics(self) -> dict[str, Any]:
        """What the step's script logged to its run (``Run.get_context().log``)."""
        return self._run.find_core_step(self.name).get_metrics()

    def get_output_data(self, name: str) -> PortDataReference:
        """The output ``name`` of this step (its ``PipelineData`` name)."""
        output = self._outputs.get(name)
        if output is None:
            raise ConfigError(
                "name",
                name,
                f"an output of step {self.name!r}: {sorted(self._outputs)}",
            )
        datastore = getattr(output, "datastore", None) or (
            self._run.workspace.get_default_datastore()
        )
        path = (
            output._output_folder(self.id)
            if hasattr(output, "_output_folder")
            else f"azureml/{self.id}/{output.name}"
        )
        return PortDataReference(name, datastore, path)

    def get_outputs(self) -> dict[str, PortDataReference]:
        return {n: self.get_output_data(n) for n in self._outputs}

    def wait_for_completion(self, show_output: bool = False, **_: Any) -> str:
        return self._run.wait_for_completion(show_output=show_output)


class PipelineRun:
    """A submitted v1 pipeline (daskscore's ``PipelineRun`` underneath)."""

    def __init__(
        self, run: _core.PipelineRun, ids: dict[str, tuple[str, list[Any]]]
    ) -> None:
        self._core = run
        self._ids = ids
        self.id = run.id
        self.experiment = run.experiment
        self.workspace = run.workspace

    def __repr__(self) -> str:
        return f"PipelineRun(id={self.id!r}, status={self.get_status()!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def get_status(self) -> str:
        return self._core.get_status()

    def wait_for_completion(
        self,
        show_output: bool = True,
        timeout_seconds: float | None = None,
        raise_on_error: bool = True,
    ) -> str:
        return self._core.wait_for_completion(
            show_output=show_output,
            timeout_seconds=timeout_seconds,
            raise_on_error=raise_on_error,
        )

    def find_core_step(self, name: str) -> _core.StepRun:
        return self._core.find_step_run(name)[0]

    def get_steps(self) -> list[StepRun]:
        return [self._step(s) for s in self._core.get_steps()]

    def find_step_run(self, name: str) -> list[StepRun]:
        return [self._step(s) for s in self._core.find_step_run(name)]

    def _step(self, step: _core.StepRun) -> StepRun:
        step_id, outputs = self._ids.get(step.name, (None, []))
        return StepRun(self, step, step_id, outputs)

    def get_metrics(self) -> dict[str, Any]:
        """The metrics logged by the steps (a later step's value of a name wins)."""
        merged: dict[str, Any] = {}
        for step in self._core.get_steps():
            merged.update(step.get_metrics())
        return merged
