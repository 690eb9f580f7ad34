"""What a job tells its workers and runners, built once on the client.

The job spec (:class:`~daskscore._protocol.JobSpec`, :func:`build_job_spec`)
travels inside the job's :class:`~daskscore.worker.plugin.ScoringPlugin` to every
worker; each worker derives its runner's setup from it. Model and input details
are split so that credentials never reach a runner's environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .. import _settings
from .._protocol import LOGS_DIR, SCRIPT_OUTPUT_DIR, JobSpec
from ..datasets import FileDataset, TabularDataset
from ..errors import ConfigError
from ..output.runlog import RUN_FOLDER
from ..output.store import StateStore
from .thresholds import has_failure_budget

__all__ = [
    "build_job_spec",
    "model_options",
    "models_env",
    "named_inputs",
    "public_model_entry",
]


def build_job_spec(
    step: Any,
    store: StateStore,
    bundle: Any,
    script_display: str,
    allowed_names: list[str] | None,
    resource: str,
    allowed_nodes: dict[str, int | None] | None = None,
    job_id: str = "",
    keep_runners: bool = False,
    interrupted: dict[int, dict[str, Any]] | None = None,
) -> JobSpec:
    """The job spec of one run of ``step``, its output in ``store``.

    ``allowed_names`` are the workers the job may use on an existing cluster
    (None: all of them); they then advertise ``resource``, which its tasks need.
    ``allowed_nodes`` are their nodes: a worker that joins one of them later (a
    restarted worker) takes a free place (see ``placement.node_limits``).
    ``keep_runners``: the workers keep their runners for a next job of the same
    script (an embedded cluster kept between jobs). ``interrupted``: the start
    marks an earlier run left of mini-batches it never recorded.
    """
    cfg = step.config
    return JobSpec(
        bundle=bundle.zip_bytes,
        script_name=bundle.script_name,
        script_display=script_display,
        source_display=_source_display(cfg),
        arguments=step.arguments,
        environment_variables=dict(cfg.environment_variables or {}),
        logging_level=cfg.logging_level,
        run_invocation_timeout=float(cfg.run_invocation_timeout),
        run_max_try=cfg.run_max_try,
        init_timeout=_init_timeout(cfg),
        output_action=str(cfg.output_action),
        output_format=cfg.output_format,
        output_url=store.output_url,
        output_storage_options=store.storage_options,
        parts_url=store.parts_url,
        records_url=store.records_url,
        log_dir=store.path("logs"),
        log_url=store.url(store.path("logs")),
        logs_local=store.local,
        script_output_dir=store.path(SCRIPT_OUTPUT_DIR),
        script_output_url=store.url(store.path(SCRIPT_OUTPUT_DIR)),
        # how to read each input (``MiniBatchSpec.source``)
        sources=[_source(d) for d in step.inputs],
        named_inputs=named_inputs(step.inputs, step.side_inputs),
        runner_env=models_env(step.models),
        model_options=model_options(step.models),
        allowed_names=allowed_names,
        allowed_nodes=allowed_nodes if allowed_names is not None else None,
        **_worker_settings(),
        # with a failure budget, every failure must reach the client at once
        stop_on_failure=has_failure_budget(cfg),
        resource=resource if allowed_names is not None else None,
        run_context=run_context(step, store, job_id),
        keep_runners=keep_runners,
        interrupted=dict(interrupted or {}),
    )


def _worker_settings() -> dict[str, Any]:
    """The dask.config settings a job's workers and runners follow (the client's)."""
    return {
        "prefetch": _settings.get("prefetch"),
        "runner_read_timeout": _settings.get("runner.read-timeout"),
        "runner_shutdown_timeout": _settings.get("runner.shutdown-timeout"),
        "runner_init_failures": _settings.get("runner.init-failures"),
        "runner_memory_limit": _settings.get("runner.memory-limit"),
        "live_interval": _settings.get("live-interval"),
    }


def run_context(step: Any, store: StateStore, job_id: str) -> dict[str, Any]:
    """The step's run as the runner sees it (``Run.get_context()``).

    A pipeline sets ``step._run_info`` (the run id, its parent, the experiment
    and the workspace); a step run alone is its own run (its job id, the step's
    name as the experiment) in the workspace of its models, if any. Its folder
    is ``<output>/logs/run``, read by every worker (as the output is).
    """
    info = dict(getattr(step, "_run_info", None) or {})
    workspace = info.get("workspace") or next(
        (m.workspace for m in step.models if getattr(m, "workspace", None)), None)
    return {
        "id": info.get("id") or job_id or step.name,
        "name": step.name,
        "parent": info.get("parent"),
        "experiment": info.get("experiment") or step.name,
        "folder": f"{store.url(store.path(LOGS_DIR))}/{RUN_FOLDER}",
        "storage_options": dict(store.storage_options),
        "workspace": getattr(workspace, "url", None),
        "workspace_options": dict(getattr(workspace, "storage_options", {}) or {}),
    }


def _init_timeout(cfg: Any) -> float:
    """``init_timeout`` when set, else ``daskscore.init-timeout.*``'s rule."""
    if getattr(cfg, "init_timeout", None) is not None:
        return float(cfg.init_timeout)
    return _settings.init_timeout(cfg.run_invocation_timeout)


def _source_display(cfg: Any) -> str:
    """The folder shown as the script's source: ``source_directory`` or its own."""
    if cfg.source_directory:
        return os.path.abspath(cfg.source_directory)
    return os.path.dirname(os.path.abspath(cfg.entry_script))


def _source(dataset: Any) -> dict[str, Any]:
    """How a runner reads one input: its storage and read options, and format."""
    return {
        "storage_options": dict(getattr(dataset, "storage_options", {}) or {}),
        "read_options": {
            **(getattr(dataset, "read_options", {}) or {}),
            "format": getattr(dataset, "format", "files"),
        },
    }


def _model_entry(model: Any) -> dict[str, Any]:
    name = getattr(model, "name", None)
    path = getattr(model, "path", None)
    if not name or path is None:
        raise ConfigError(
            "models",
            model,
            "registered models (objects with .name, "
            ".version and .path), e.g. ds.Model(ws, 'mnist')",
        )
    entry = {
        "name": name,
        "version": getattr(model, "version", None),
        "path": os.fspath(path),
    }
    options = getattr(model, "storage_options", None)
    if options:
        entry["storage_options"] = dict(options)
    return entry


def public_model_entry(model: Any) -> dict[str, Any]:
    """A model's name, version and path: what may be shown (no credentials)."""
    entry = _model_entry(model)
    entry.pop("storage_options", None)
    return entry


def models_env(models: list[Any]) -> dict[str, str]:
    """The runner's ``DASKSCORE_MODELS`` variable: names, versions and paths.

    Credentials stay out of it (a script may print its environment, and child
    processes inherit it); they reach the runner in its setup message, see
    :func:`model_options`.
    """
    if not models:
        return {}
    entries = [public_model_entry(m) for m in models]
    return {"DASKSCORE_MODELS": json.dumps(entries, default=str)}


def model_options(models: list[Any]) -> dict[str, dict[str, Any]]:
    """Storage options of the models in remote workspaces, by model path."""
    out = {}
    for model in models:
        entry = _model_entry(model)
        if entry.get("storage_options"):
            out[entry["path"]] = entry["storage_options"]
    return out


def named_inputs(inputs: list[Any], side_inputs: list[Any]) -> dict[str, Any]:
    """What ``EntryScript().inputs[name]`` gives for named and side inputs."""
    out: dict[str, Any] = {}
    for dataset in inputs:
        if getattr(dataset, "input_name", None):
            out[dataset.input_name] = (
                dataset.path
                if not isinstance(dataset.path, list)
                else list(dataset.path)
            )
    for i, dataset in enumerate(side_inputs):
        name = getattr(dataset, "input_name", None) or f"side_input_{i}"
        if isinstance(dataset, FileDataset):
            out[name] = dataset.to_path()
        elif isinstance(dataset, TabularDataset) and dataset.frame is None:
            out[name] = dataset.path
        else:
            out[name] = os.fspath(getattr(dataset, "path", dataset))
    return out
