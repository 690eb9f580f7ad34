"""``${{...}}`` bindings of a v2 job file, resolved before anything runs.

:func:`resolve` gives a :class:`Plan`: every port of the pipeline and of each job
as a :class:`Value` (a literal, or a :class:`~.paths.Location` for data), the jobs'
dependencies and an order to run them in (a cycle is an error naming it). Then
:meth:`Plan.render` fills ``${{inputs.x}}`` / ``${{outputs.x}}`` into a job's
command line, arguments and other text; ``$[[ ... ]]`` keeps its text only when
the optional inputs inside it are given. Anything unknown is a
:class:`~daskscore.errors.UsageError` naming the file, the key and the binding.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .paths import DEFAULT_DATASTORE_NAME, Location, PathResolver
from .spec import Job, JobFile, Port

__all__ = ["Plan", "ResolvedJob", "Value", "resolve"]

BINDING = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")
OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)
APPEND_ROW_DEFAULT = "parallel_run_step.txt"


@dataclass
class Value:
    """A resolved port: ``type``; ``value`` (a literal) or ``location`` (data)."""

    name: str
    type: str | None
    value: Any = None
    location: Location | None = None
    mode: str | None = None
    ref: str = ""  # the ${{parent.jobs...}} binding it came from

    @property
    def given(self) -> bool:
        return self.value is not None or self.location is not None

    def text(self) -> str:
        """What a command line gets for it."""
        if self.location is not None:
            return self.location.url
        if isinstance(self.value, bool):
            return str(self.value)
        return "" if self.value is None else str(self.value)


@dataclass
class ResolvedJob:
    job: Job
    inputs: dict[str, Value] = field(default_factory=dict)
    outputs: dict[str, Value] = field(default_factory=dict)
    needs: set[str] = field(default_factory=set)
    folder: str = ""  # the job's own folder under the output root (logs, state)


@dataclass
class Plan:
    file: JobFile
    inputs: dict[str, Value]
    outputs: dict[str, Value]
    jobs: dict[str, ResolvedJob]
    order: list[str]
    output_root: str
    paths: PathResolver

    def render(self, name: str, text: Any, key: str) -> str:
        """``text`` of job ``name`` (written at ``key``) with its bindings filled in."""
        rjob = self.jobs[name]
        text = str(text)

        def optional(match: re.Match) -> str:
            inner = match.group(1)
            for ref in BINDING.findall(inner):
                parts = ref.split(".")
                if len(parts) == 2 and parts[0] == "inputs":
                    port = rjob.inputs.get(parts[1])
                    if port is None or not port.given:
                        return ""
            return inner

        text = OPTIONAL.sub(optional, text)
        return BINDING.sub(lambda m: self._own(rjob, m.group(1), key).text(), text)

    def _own(self, rjob: ResolvedJob, ref: str, key: str) -> Value:
        where = f"{rjob.job.where(key)}: ${{{{{ref}}}}}"
        parts = ref.split(".")
        if ref == "name":
            return Value("name", "string", rjob.job.name)
        if ref == "default_datastore":
            return Value("default_datastore", "string", DEFAULT_DATASTORE_NAME)
        if len(parts) == 2 and parts[0] in ("inputs", "outputs"):
            ports = rjob.inputs if parts[0] == "inputs" else rjob.outputs
            if parts[1] not in ports:
                raise UsageError(f"{where}: the job has no {parts[0][:-1]} "
                                 f"{parts[1]!r} ({parts[0]}: "
                                 f"{', '.join(sorted(ports)) or 'none'})")
            port = ports[parts[1]]
            if not port.given:
                raise UsageError(f"{where}: {parts[0][:-1]} {parts[1]!r} has no value; "
                                 "give one, or write the option inside $[[ ... ]]")
            return port
        raise UsageError(f"{where}: unknown binding; in a job's own fields use "
                         "${{inputs.x}}, ${{outputs.x}}, ${{name}} or "
                         "${{default_datastore}}")


def _simple(text: str, job_name: str, where: str) -> str:
    """Bindings allowed inside a path: ``${{name}}``, ``${{default_datastore}}``."""
    def sub(match: re.Match) -> str:
        ref = match.group(1)
        if ref == "name":
            return job_name
        if ref == "default_datastore":
            return DEFAULT_DATASTORE_NAME
        raise UsageError(f"{where}: ${{{{{ref}}}}}: only ${{{{name}}}} and "
                         "${{default_datastore}} can be used in a path")
    return BINDING.sub(sub, text)


class _Resolver:
    def __init__(self, file: JobFile, root: str, paths: PathResolver) -> None:
        self.file, self.root, self.paths = file, root, paths
        self.pipeline = file.type == "pipeline"
        self.jobs: dict[str, ResolvedJob] = {}
        self.inputs: dict[str, Value] = {}
        self.outputs: dict[str, Value] = {}

    def data(self, port: Port, owner: str, where: str, is_input: bool,
             default: str | None) -> Value:
        path = port.path if port.path is not None else (
            port.value if isinstance(port.value, str) else None)
        if path is None and default is not None:
            path = default
        if path is None:
            return Value(port.name, port.type, None, None, port.mode)
        path = _simple(str(path), owner, where)
        # paths are written in the job file: relative to it (a component's
        # code: is relative to the component file, see spec.Job.base_dir)
        loc = self.paths.resolve(path, self.file.base_dir, f"{where}.path",
                                 must_exist=is_input)
        return Value(port.name, port.type, None, loc, port.mode)

    def port(self, port: Port, owner: str, where: str, is_input: bool,
             default: str | None = None) -> Value:
        if port.is_data:
            return self.data(port, owner, where, is_input, default)
        if port.type is None and isinstance(port.value, str) and port.value \
                and not is_input:
            return self.data(Port(port.name, "uri_folder", None, port.value),
                             owner, where, is_input, default)
        if port.type is None and default is not None and not is_input:
            return self.data(Port(port.name, "uri_folder"), owner, where, False,
                             default)
        value = port.value
        if isinstance(value, str):
            value = _simple(value, owner, where)
        return Value(port.name, port.type or "string", value, None, port.mode)

    def default_output(self, rjob: ResolvedJob, port: Port) -> str:
        base = os.path.join(rjob.folder, port.name)
        if port.type == "uri_file":
            task = rjob.job.data.get("task") or {}
            append = str(task.get("append_row_to") or "")
            used = re.search(r"outputs\." + re.escape(port.name) + r"\s*\}\}", append)
            leaf = APPEND_ROW_DEFAULT if used else port.name
            return os.path.join(base, leaf)
        return base

    def parent_ref(self, ref: str, rjob: ResolvedJob, where: str) -> Value:
        parts = ref.split(".")
        if parts[0] != "parent":
            raise UsageError(f"{where}: ${{{{{ref}}}}}: a pipeline job's inputs bind "
                             "to "
                             "${{parent.inputs.x}}, ${{parent.outputs.x}} or "
                             "${{parent.jobs.J.outputs.Y}}")
        if not self.pipeline:
            raise UsageError(f"{where}: ${{{{{ref}}}}}: a standalone job has no parent")
        if len(parts) == 3 and parts[1] in ("inputs", "outputs"):
            ports = self.inputs if parts[1] == "inputs" else self.outputs
            if parts[2] not in ports:
                raise UsageError(f"{where}: ${{{{{ref}}}}}: the pipeline has no "
                                 f"{parts[1][:-1]} {parts[2]!r} ({parts[1]}: "
                                 f"{', '.join(sorted(ports)) or 'none'})")
            return ports[parts[2]]
        if len(parts) == 5 and parts[1] == "jobs" and parts[3] == "outputs":
            other = self.file.jobs.get(parts[2])
            if other is None:
                raise UsageError(f"{where}: ${{{{{ref}}}}}: no job {parts[2]!r} in the "
                                 f"pipeline (jobs: {', '.join(self.file.jobs)})")
            if parts[4] not in other.outputs:
                raise UsageError(f"{where}: ${{{{{ref}}}}}: job {parts[2]!r} has no "
                                 f"output {parts[4]!r} (outputs: "
                                 f"{', '.join(sorted(other.outputs)) or 'none'})")
            rjob.needs.add(parts[2])
            return Value(parts[4], other.outputs[parts[4]].type, None, None)  # later
        raise UsageError(f"{where}: ${{{{{ref}}}}}: unknown binding; use "
                         "parent.inputs.x, parent.outputs.x or parent.jobs.J.outputs.Y")


def _bound(text: Any) -> str | None:
    """The reference when ``text`` is exactly one binding, else None."""
    if isinstance(text, str):
        match = BINDING.fullmatch(text.strip())
        if match:
            return match.group(1)
    return None


def _order(jobs: dict[str, ResolvedJob], file: JobFile) -> list[str]:
    """Dependency order (file order among equals); a cycle is a UsageError."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise UsageError(f"{file.path}: jobs: the jobs depend on each other in a "
                             f"cycle: {' -> '.join(cycle)}; remove one of these "
                             "${{parent.jobs...}} bindings")
        state[name] = 1
        for dep in sorted(jobs[name].needs, key=list(jobs).index):
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in jobs:
        visit(name, [])
    return order


def _bind_inputs(res: _Resolver, rjob: ResolvedJob) -> None:
    job = rjob.job
    for name, port in job.inputs.items():
        where = job.where(f"inputs.{name}")
        ref = _bound(port.value if port.path is None else port.path)
        if ref is not None and ref.startswith("parent."):
            target = res.parent_ref(ref, rjob, where)
            rjob.inputs[name] = Value(name, port.type or target.type, target.value,
                                      target.location, port.mode or target.mode, ref)
        elif isinstance(port.value, str) and BINDING.search(port.value) \
                and port.path is None and not port.is_data:
            def sub(m: re.Match, _w: str = where) -> str:
                inner = m.group(1)
                if inner in ("name", "default_datastore"):
                    return _simple(m.group(0), job.name, _w)
                return res.parent_ref(inner, rjob, _w).text()
            rjob.inputs[name] = Value(name, port.type or "string",
                                      BINDING.sub(sub, port.value), None, port.mode)
        else:
            rjob.inputs[name] = res.port(port, job.name, where, True)


def _bind_outputs(res: _Resolver, rjob: ResolvedJob) -> None:
    job = rjob.job
    for name, port in job.outputs.items():
        where = job.where(f"outputs.{name}")
        ref = _bound(port.value if port.path is None else port.path)
        if ref is not None:
            target = res.parent_ref(ref, rjob, where)
            if not ref.startswith("parent.outputs."):
                raise UsageError(f"{where}: ${{{{{ref}}}}}: an output binds to "
                                 "${{parent.outputs.x}}")
            if target.location is None:
                pname = ref.split(".")[2]
                target = res.outputs[pname] = res.port(
                    Port(pname, port.type or target.type or "uri_folder"),
                    job.name, where, False, res.default_output(rjob, port))
            rjob.outputs[name] = Value(name, port.type or target.type, None,
                                       target.location, port.mode)
        else:
            rjob.outputs[name] = res.port(port, job.name, where, False,
                                          res.default_output(rjob, port))


def resolve(file: JobFile, output_root: str, paths: PathResolver) -> Plan:
    """Resolve every binding and path of ``file``; the jobs' run order."""
    res = _Resolver(file, os.path.abspath(output_root), paths)
    res.inputs = {n: res.port(p, file.name, f"{file.path}: inputs.{n}", True)
                  for n, p in file.inputs.items()}
    for n, p in file.outputs.items():
        res.outputs[n] = res.port(p, file.name, f"{file.path}: outputs.{n}", False,
                                  None) if (p.path or p.value) else Value(n, p.type)
    for name, job in file.jobs.items():
        folder = res.root if not res.pipeline else os.path.join(res.root, name)
        rjob = res.jobs[name] = ResolvedJob(job, folder=folder)
        _bind_outputs(res, rjob)
    for rjob in res.jobs.values():
        _bind_inputs(res, rjob)
    order = _order(res.jobs, file)
    for name in order:  # now the producers' outputs are known
        rjob = res.jobs[name]
        for pname, value in list(rjob.inputs.items()):
            ref = value.ref
            if ref.startswith("parent.jobs."):
                parts = ref.split(".")
                src = res.jobs[parts[2]].outputs[parts[4]]
                rjob.inputs[pname] = Value(pname, value.type or src.type, None,
                                           src.location, value.mode)
    plan = Plan(file, res.inputs, res.outputs, res.jobs, order, res.root, paths)
    for name in order:
        _check_texts(plan, name)
    return plan


def texts_of(job: Job) -> dict[str, Any]:
    """The fields of a job whose bindings are filled in at run time."""
    data = job.data
    out: dict[str, Any] = {}
    if job.type == "command":
        out["command"] = data.get("command")
    else:
        task = data.get("task") or {}
        out["input_data"] = data.get("input_data")
        for key in ("program_arguments", "append_row_to", "entry_script", "code"):
            if task.get(key) is not None:
                out[f"task.{key}"] = task[key]
    for key, value in (data.get("environment_variables") or {}).items():
        out[f"environment_variables.{key}"] = value
    return out


def _check_texts(plan: Plan, name: str) -> None:
    for key, text in texts_of(plan.jobs[name].job).items():
        plan.render(name, text, key)
