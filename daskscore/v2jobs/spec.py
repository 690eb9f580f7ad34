"""Load and check an Azure ML v2 job file (type: pipeline, parallel or command).

:func:`load_job_file` reads the YAML (and the ``component: ./x.yml`` files its
command jobs point at), applies ``--set`` overrides and gives a :class:`JobFile`
of :class:`Job` objects whose ``inputs``/``outputs`` are :class:`Port` values.
Nothing is resolved here (see :mod:`.bindings`). A structural problem is a
:class:`~daskscore.errors.UsageError` naming the file and the key; keys that
daskscore accepts but does not use are collected in ``JobFile.notes`` (one info
line each).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import UsageError

__all__ = ["Job", "JobFile", "Port", "load_job_file", "slug"]

JOB_TYPES = ("pipeline", "parallel", "command")
DATA_TYPES = ("uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model",
              "triton_model")
SCALAR_TYPES = ("string", "number", "integer", "boolean")
MODES = ("ro_mount", "rw_mount", "download", "direct", "eval_mount", "eval_download",
         "upload")

# keys whose meaning daskscore has; keys accepted with one info line; the rest
# also get an info line ("not used by daskscore")
_COMMON = {"$schema", "type", "name", "display_name", "description", "tags",
           "experiment_name", "inputs", "outputs", "properties"}
_PIPELINE_KEYS = _COMMON | {"jobs", "settings"}
_PARALLEL_KEYS = _COMMON | {
    "input_data", "mini_batch_size", "partition_keys", "mini_batch_error_threshold",
    "error_threshold", "retry_settings", "logging_level", "resources",
    "max_concurrency_per_instance", "environment_variables", "task", "compute",
    "environment", "component"}
_COMMAND_KEYS = _COMMON | {"command", "code", "environment", "environment_variables",
                           "compute", "resources", "component", "version",
                           "is_deterministic", "distribution", "limits"}
_IGNORED = {
    "compute": "daskscore runs on the current Dask cluster",
    "environment": "daskscore runs in the current Python environment",
    "identity": "daskscore uses the credentials of its datastores",
    "distribution": "daskscore starts one process per command job",
    "limits": "daskscore does not limit a command job's time",
    "is_deterministic": "daskscore reruns every command job",
    "version": "components are read from their file",
    "properties": "kept out of the run history",
}
_TASK_KEYS = {"type", "code", "entry_script", "program_arguments", "append_row_to",
              "environment", "daskscore_append_row_format"}


@dataclass
class Port:
    """One input or output of a job or a pipeline, as written.

    ``value`` is a literal (``5``, ``"abc"``), a binding string
    (``"${{parent.inputs.x}}"``) or None; ``path`` the data path of a
    ``uri_file``/``uri_folder``/``mltable`` port.
    """

    name: str
    type: str | None = None
    value: Any = None
    path: str | None = None
    mode: str | None = None
    optional: bool = False
    declared: bool = False  # from a component's declaration

    @property
    def is_data(self) -> bool:
        return self.type in DATA_TYPES


@dataclass
class Job:
    """One job: a node of a pipeline, or a standalone job file."""

    name: str
    type: str
    data: dict[str, Any]
    file: str
    key: str  # where it is in its file: "jobs.train" ("" for a standalone job)
    base_dir: str  # relative paths of the job (code:, local inputs) start here
    inputs: dict[str, Port] = field(default_factory=dict)
    outputs: dict[str, Port] = field(default_factory=dict)

    def where(self, key: str) -> str:
        """``pipeline.yml: jobs.train.inputs.x`` for error messages."""
        full = f"{self.key}.{key}" if self.key else key
        return f"{self.file}: {full}"


@dataclass
class JobFile:
    """A loaded job file: its own ports, its jobs, and the info lines to print."""

    path: str
    type: str
    name: str
    data: dict[str, Any]
    jobs: dict[str, Job]
    inputs: dict[str, Port]
    outputs: dict[str, Port]
    experiment_name: str
    notes: list[str] = field(default_factory=list)

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


def slug(text: str, fallback: str = "job") -> str:
    """A step or experiment name daskscore accepts: ``train_job`` -> ``train-job``."""
    name = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"{fallback}-{name}".strip("-")
    name = name[:32].rstrip("-")
    return name if len(name) >= 3 else f"{name}-{fallback}"


def read_yaml(
    path: str, what: str = "job file", empty_ok: bool = False
) -> dict[str, Any]:
    """The mapping in a YAML file, or a one-line UsageError (``empty_ok``: an
    empty file is an empty mapping)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder, not a YAML file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(
            f"{what} {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must be a YAML mapping")
    return data


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _port(name: str, raw: Any, where: str, declared: bool = False) -> Port:
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"type", "path", "mode", "default", "optional",
                                     "value", "description", "min", "max", "enum",
                                     "datastore", "name", "version"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                             "type, path, mode, default, optional, value")
        kind = raw.get("type")
        if kind is not None and kind not in (*DATA_TYPES, *SCALAR_TYPES):
            raise UsageError(f"{where}.type: {kind!r} is not a type daskscore knows; "
                             f"use one of {', '.join((*SCALAR_TYPES, *DATA_TYPES))}")
        mode = raw.get("mode")
        if mode is not None and mode not in MODES:
            raise UsageError(f"{where}.mode: {mode!r}; use one of {', '.join(MODES)}")
        value = raw.get("value", raw.get("default"))
        return Port(name, kind, value, raw.get("path"), mode,
                    bool(raw.get("optional", False)), declared)
    if isinstance(raw, bool):
        return Port(name, "boolean", raw)
    if isinstance(raw, int | float):
        return Port(name, "number", raw)
    if raw is None or isinstance(raw, str):
        return Port(name, None, raw)
    raise UsageError(f"{where}: a value, a binding or a mapping with type/path, not "
                     f"{type(raw).__name__}")


def _ports(raw: Any, where: str, declared: bool = False) -> dict[str, Port]:
    return {str(k): _port(str(k), v, f"{where}.{k}", declared)
            for k, v in _mapping(raw, where).items()}


def _merge_ports(declared: dict[str, Port], given: dict[str, Port],
                 where: str) -> dict[str, Port]:
    """A component's declarations with the job's values."""
    out = dict(declared)
    for name, port in given.items():
        base = declared.get(name)
        if base is None:
            raise UsageError(f"{where}.{name}: the component declares no such port "
                             f"(it has: {', '.join(sorted(declared)) or 'none'})")
        out[name] = Port(name, port.type or base.type,
                         port.value if port.value is not None else base.value,
                         port.path or base.path, port.mode or base.mode,
                         base.optional, True)
    return out


def _notes_for(data: dict[str, Any], known: set[str], where: str,
               notes: list[str]) -> None:
    for key in data:
        if key in _IGNORED and data.get(key) not in (None, {}, []):
            notes.append(f"{where}{key}: accepted and ignored ({_IGNORED[key]})")
        elif key not in known and key not in _IGNORED:
            notes.append(f"{where}{key}: not used by daskscore")


def _component(job: dict[str, Any], base_dir: str, where: str) -> tuple[dict, str]:
    """The job merged with its ``component: ./x.yml`` file; the component's folder."""
    ref = job.get("component")
    if ref is None:
        return job, base_dir
    if isinstance(ref, dict):  # an inline component
        return {**ref, **{k: v for k, v in job.items() if k != "component"}}, base_dir
    if not isinstance(ref, str) or ref.startswith("azureml:"):
        raise UsageError(
            f"{where}.component: {ref!r}: daskscore reads components from local "
            "YAML files only (component: ./component.yml)")
    path = os.path.normpath(os.path.join(base_dir, ref.removeprefix("file:")))
    comp = read_yaml(path, f"component file ({where}.component)")
    if comp.get("type", "command") not in ("command", "parallel"):
        raise UsageError(f"{path}: type {comp.get('type')!r}: daskscore runs command "
                         "and parallel components")
    merged = {k: v for k, v in comp.items() if k not in ("inputs", "outputs")}
    merged.update({k: v for k, v in job.items()
                   if k not in ("component", "inputs", "outputs")})
    merged["_component_inputs"] = comp.get("inputs")
    merged["_component_outputs"] = comp.get("outputs")
    merged["_component_file"] = path
    merged["inputs"] = job.get("inputs")
    merged["outputs"] = job.get("outputs")
    return merged, os.path.dirname(path)


def make_job(name: str, raw: Any, file: str, key: str, base_dir: str,
             notes: list[str]) -> Job:
    """A :class:`Job` from its YAML mapping (a node of a pipeline or a whole file)."""
    where = f"{file}: {key}" if key else file
    data, job_dir = _component(_mapping(raw, where), base_dir, key or "job")
    kind = data.get("type", "command" if "command" in data else None)
    if kind not in ("parallel", "command"):
        raise UsageError(f"{where}{'.' if key else ': '}type: {kind!r}; daskscore runs "
                         "jobs of type command and parallel")
    known = _PARALLEL_KEYS if kind == "parallel" else _COMMAND_KEYS
    _notes_for({k: v for k, v in data.items() if not k.startswith("_")}, known,
               f"{key}." if key else "", notes)
    pre = f"{key}." if key else ""
    inputs = _ports(data.get("inputs"), f"{where}{'.' if key else ': '}inputs")
    outputs = _ports(data.get("outputs"), f"{where}{'.' if key else ': '}outputs")
    if "_component_file" in data:
        comp = data["_component_file"]
        declared = _ports(data["_component_inputs"], f"{comp}: inputs", True)
        inputs = _merge_ports(declared, inputs, f"{where}.inputs")
        outputs = _merge_ports(_ports(data["_component_outputs"], f"{comp}: outputs",
                                      True), outputs, f"{where}.outputs")
    job = Job(name, kind, data, file, key, job_dir, inputs, outputs)
    if kind == "command" and not isinstance(data.get("command"), str):
        raise UsageError(f"{job.where('command')}: a command job needs command: "
                         "(the command line to run)")
    if kind == "parallel":
        task = _mapping(data.get("task"), job.where("task"))
        for k in sorted(set(task) - _TASK_KEYS):
            notes.append(f"{pre}task.{k}: not used by daskscore")
        if task.get("type", "run_function") != "run_function":
            raise UsageError(f"{job.where('task.type')}: {task.get('type')!r}; "
                             "daskscore runs task.type: run_function")
        if not task.get("entry_script"):
            raise UsageError(f"{job.where('task.entry_script')}: missing; name the "
                             "script with init() and run(mini_batch)")
        if task.get("environment"):
            notes.append(f"{pre}task.environment: accepted and ignored (daskscore "
                         "runs in the current Python environment)")
        if not data.get("input_data"):
            raise UsageError(f"{job.where('input_data')}: missing; say which input "
                             "is split into mini-batches (${{inputs.x}})")
    return job


def _apply_override(data: dict[str, Any], item: str, file: str) -> None:
    """``jobs.X.inputs.Y=VALUE`` (or ``inputs.Y=VALUE``) into the loaded YAML."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    ok = sep and (parts[:1] == ["inputs"] and len(parts) == 2
                  or parts[:1] == ["jobs"] and len(parts) == 4 and parts[2] == "inputs")
    if not ok:
        raise UsageError(f"--set {item!r}: use jobs.JOB.inputs.NAME=VALUE or "
                         "inputs.NAME=VALUE")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            if part == "inputs" and isinstance(node, dict):
                child = node.setdefault("inputs", {})
            else:
                raise UsageError(f"--set {item!r}: {file} has no "
                                 f"{'.'.join(parts[:i + 1])}")
        node = child
    value = yaml.safe_load(text) if text.strip() else ""
    name = parts[-1]
    current = node.get(name)
    if isinstance(current, dict):
        if current.get("type") in DATA_TYPES or "path" in current:
            current["path"] = str(text)
        else:
            current["value"] = value
    else:
        node[name] = value


def load_job_file(path: str, overrides: list[str] | None = None) -> JobFile:
    """Load ``path`` (a v2 pipeline, parallel or command job file), with overrides."""
    data = read_yaml(path)
    for item in overrides or []:
        _apply_override(data, item, path)
    kind = data.get("type")
    if kind not in JOB_TYPES:
        raise UsageError(f"{path}: type: {kind!r}; daskscore runs Azure ML v2 files "
                         "of type pipeline, parallel or command")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = str(data.get("name") or data.get("display_name") or stem)
    notes: list[str] = []
    base_dir = os.path.dirname(os.path.abspath(path))
    experiment = slug(data.get("experiment_name") or os.path.basename(base_dir),
                      "experiment")
    if kind != "pipeline":
        job = make_job(name, data, path, "", base_dir, notes)
        return JobFile(path, kind, name, data, {name: job}, {}, {}, experiment, notes)
    _notes_for(data, _PIPELINE_KEYS, "", notes)
    settings = _mapping(data.get("settings"), f"{path}: settings")
    for key in settings:
        if key == "default_compute":
            notes.append("settings.default_compute: accepted and ignored (daskscore "
                         "runs on the current Dask cluster)")
        else:
            notes.append(f"settings.{key}: not used by daskscore")
    raw_jobs = _mapping(data.get("jobs"), f"{path}: jobs")
    if not raw_jobs:
        raise UsageError(f"{path}: jobs: a pipeline needs at least one job")
    jobs = {str(n): make_job(str(n), raw, path, f"jobs.{n}", base_dir, notes)
            for n, raw in raw_jobs.items()}
    return JobFile(path, kind, name, data, jobs,
                   _ports(data.get("inputs"), f"{path}: inputs"),
                   _ports(data.get("outputs"), f"{path}: outputs"), experiment, notes)
