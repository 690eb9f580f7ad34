"""A ``type: parallel`` job as a :class:`~daskscore.ParallelRunStep`.

The keys map onto :class:`~daskscore.ParallelRunConfig` as in the table of
``docs/migrating-from-azureml-v2.md``. The reference runner's own flags inside
``task.program_arguments`` set the daskscore setting of the same meaning (they
win over the job's keys) or are ignored with one info line; the script still
sees them in ``sys.argv``, as it does in Azure (scripts use ``parse_known_args``).

The collected file (``task.append_row_to``) is written in the reference format
whatever its extension (``parallel_run_step.txt`` lines), or in the engine's own
``csv``/``parquet`` format with the daskscore-only key
``task.daskscore_append_row_format``.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from ..config import ParallelRunConfig
from ..datasets import Dataset, FileDataset, dataset_from_format
from ..errors import UsageError
from ..step import ParallelRunStep
from ..storage import url_to_fs
from .bindings import BINDING, Plan, Value
from .mltable import load_mltable
from .mltable import python_encoding as mltable_encoding
from .paths import Location
from .spec import slug

__all__ = ["ParallelJob", "RUNNER_FLAGS", "build_parallel_job"]

# the reference runner's flags -> the daskscore setting they set (and its type)
RUNNER_FLAGS: dict[str, tuple[str, Any]] = {
    "--error_threshold": ("error_threshold", int),
    "--mini_batch_error_threshold": ("allowed_failed_count", int),
    "--allowed_failed_count": ("allowed_failed_count", int),
    "--allowed_failed_percent": ("allowed_failed_percent", float),
    "--mini_batch_size": ("mini_batch_size", str),
    "--run_invocation_timeout": ("run_invocation_timeout", float),
    "--run_max_try": ("run_max_try", int),
    "--logging_level": ("logging_level", str),
    "--process_count_per_node": ("process_count_per_node", int),
    "--node_count": ("node_count", int),
}
# flags daskscore has no setting for: ignored (one info line names them)
IGNORED_FLAGS = (
    "--task_overhead_timeout", "--progress_update_timeout",
    "--first_task_creation_timeout", "--resource_monitor_interval",
    "--copy_logs_to_parent", "--enable_stdout_stderr_redirection",
    "--save_process_profile", "--profiling_module", "--agent_progress_update_interval",
    "--task_creation_timeout", "--run_invocation_timeout_buffer",
)
_FORMATS = {"txt": ".txt", "csv": ".csv", "parquet": ".parquet"}


class ParallelJob:
    """A built parallel job: the step, and where its collected file goes."""

    def __init__(self, name: str, step: Any, target: Value | None,
                 notes: list[str]) -> None:
        self.name = name
        self.step = step  # a ParallelRunStep, or what makes it once the inputs exist
        self.target = target
        self.notes = notes

    def run(self, client: Any = None, progress: Any = None):
        if not isinstance(self.step, ParallelRunStep):
            self.step = self.step()
        result = self.step.run(client=client, progress=progress)
        if self.target is not None and result.output_file:
            result.output_file = _deliver(result.output_file, self.target)
        return result


def _deliver(collected: str, target: Value) -> str:
    """Move the collected file to the ``append_row_to`` location."""
    loc = target.location
    assert loc is not None
    if loc.url == collected:
        return collected
    if loc.is_local:
        os.makedirs(os.path.dirname(loc.url) or ".", exist_ok=True)
        os.replace(collected, loc.url)
        return loc.url
    fs, path = url_to_fs(loc.url, loc.storage_options)
    fs.put_file(collected, path)
    os.remove(collected)
    return loc.url


def runner_flags(arguments: list[str], where: str,
                 notes: list[str]) -> dict[str, Any]:
    """The settings the reference runner's flags in ``arguments`` ask for."""
    settings: dict[str, Any] = {}
    ignored = []
    for i, arg in enumerate(arguments):
        flag, eq, inline = arg.partition("=")
        if flag in RUNNER_FLAGS:
            value = inline if eq else (arguments[i + 1] if i + 1 < len(arguments)
                                       else None)
            name, kind = RUNNER_FLAGS[flag]
            try:
                settings[name] = kind(value)
            except (TypeError, ValueError):
                raise UsageError(f"{where}: {flag} {value!r}: expected a "
                                 f"{kind.__name__}") from None
        elif flag in IGNORED_FLAGS:
            ignored.append(flag)
    if ignored:
        notes.append(f"{where}: runner flag(s) {', '.join(ignored)} accepted and "
                     "ignored (daskscore has no such setting)")
    return settings


def _dataset(value: Value, where: str, mltable_dir: str):
    loc = value.location
    if loc is None:
        raise UsageError(f"{where}: the input has no path")
    if loc.dataset is not None:
        return loc.dataset
    if value.type == "mltable":
        table = load_mltable(loc.url, loc.storage_options, where)
        if table.is_plain():
            fmt = {"read_delimited": "csv", "read_parquet": "parquet",
                   "read_json_lines": "jsonl"}[table.reader]
            opts = {}
            if fmt == "csv":
                opts["separator"] = table.read_options.get("delimiter", ",")
            if table.read_options.get("encoding"):
                opts["encoding"] = mltable_encoding(table.read_options["encoding"])
            paths = [p for p, _ in table.files()]
            return dataset_from_format(fmt, paths if len(paths) > 1 else paths[0],
                                       table.storage_options, opts or None)
        # transformations: read the table once here, score it from a Parquet copy
        os.makedirs(mltable_dir, exist_ok=True)
        copy = os.path.join(mltable_dir, f"{value.name}.parquet")
        table.to_pandas_dataframe().to_parquet(copy, index=False,
                                               row_group_size=2048)
        return Dataset.Tabular.from_parquet_files(copy)
    if value.type in ("uri_folder", "uri_file", None):
        return FileDataset(loc.url, loc.storage_options)
    raise UsageError(f"{where}: input of type {value.type}: a parallel job's "
                     "input_data is a uri_folder, uri_file or mltable input")


def _input_data(plan: Plan, name: str) -> tuple[Value, str]:
    rjob = plan.jobs[name]
    raw = rjob.job.data.get("input_data")
    where = rjob.job.where("input_data")
    match = BINDING.fullmatch(str(raw).strip())
    if match and match.group(1).startswith("inputs."):
        plan.render(name, raw, "input_data")  # checks the binding
        return rjob.inputs[match.group(1).split(".", 1)[1]], where
    raise UsageError(f"{where}: {raw!r}: input_data names one of the job's inputs, "
                     "e.g. ${{inputs.job_data_path}}")


def _settings(plan: Plan, name: str, notes: list[str]) -> dict[str, Any]:
    job = plan.jobs[name].job
    data = job.data
    retry = data.get("retry_settings") or {}
    resources = data.get("resources") or {}
    pre = f"{job.key}." if job.key else ""
    for key in ("instance_type", "shm_size", "properties"):
        if key in resources:
            notes.append(f"{pre}resources.{key}: accepted and ignored (daskscore runs "
                         "on the current Dask cluster)")
    settings: dict[str, Any] = {
        "mini_batch_size": data.get("mini_batch_size"),
        "partition_keys": data.get("partition_keys"),
        "allowed_failed_count": data.get("mini_batch_error_threshold"),
        "error_threshold": data.get("error_threshold"),
        "run_max_try": (int(retry["max_retries"]) + 1
                        if retry.get("max_retries") is not None else None),
        "run_invocation_timeout": retry.get("timeout"),
        "logging_level": data.get("logging_level"),
        "node_count": resources.get("instance_count"),
        "process_count_per_node": data.get("max_concurrency_per_instance"),
    }
    if settings["partition_keys"] is not None:
        settings["mini_batch_size"] = None
    env = {str(k): plan.render(name, v, f"environment_variables.{k}")
           for k, v in (data.get("environment_variables") or {}).items()}
    settings["environment_variables"] = env or None
    if settings["allowed_failed_count"] == -1:
        settings["allowed_failed_count"] = None
    return {k: v for k, v in settings.items() if v is not None}


def build_parallel_job(plan: Plan, name: str, notes: list[str]) -> ParallelJob:
    """The :class:`ParallelJob` of job ``name`` of ``plan`` (nothing runs).

    Every setting is checked here; the input dataset is made when the job starts
    when it is an earlier job's output (see :meth:`ParallelJob.run`).
    """
    rjob = plan.jobs[name]
    job = rjob.job
    task = job.data.get("task") or {}
    value, where = _input_data(plan, name)
    arguments = shlex.split(plan.render(name, task.get("program_arguments") or "",
                                        "task.program_arguments"))
    settings = _settings(plan, name, notes)
    settings.update(runner_flags(arguments, job.where("task.program_arguments"), notes))
    code = task.get("code")
    source = (os.path.normpath(os.path.join(job.base_dir, plan.render(
        name, code, "task.code"))) if code else job.base_dir)
    target = None
    append = task.get("append_row_to")
    fmt = task.get("daskscore_append_row_format", "txt")
    if fmt not in _FORMATS:
        raise UsageError(f"{job.where('task.daskscore_append_row_format')}: {fmt!r}; "
                         "use txt (the reference format), csv or parquet")
    if append:
        target = _append_target(plan, name, append)
        settings["append_row_file_name"] = "parallel_run_step" + _FORMATS[fmt]
    else:
        settings["output_action"] = "summary_only"
    if value.type in ("uri_folder", "uri_file") and "partition_keys" in settings:
        raise UsageError(f"{job.where('partition_keys')}: partition_keys needs an "
                         "mltable input (a table), not a uri_folder")
    config = ParallelRunConfig(entry_script=str(task["entry_script"]),
                               source_directory=source, **settings)

    def make_step() -> ParallelRunStep:
        mltable_dir = os.path.join(rjob.folder, ".daskscore-mltable")
        return ParallelRunStep(name=slug(name), parallel_run_config=config,
                               inputs=[_dataset(value, where, mltable_dir)],
                               output=rjob.folder, arguments=arguments,
                               allow_reuse=False)

    return ParallelJob(name, make_step if rjob.needs else make_step(), target, notes)


def _append_target(plan: Plan, name: str, append: str) -> Value:
    """Where ``task.append_row_to`` puts the collected file."""
    rjob = plan.jobs[name]
    match = BINDING.fullmatch(str(append).strip())
    if match and match.group(1).startswith("outputs."):
        plan.render(name, append, "task.append_row_to")
        out = rjob.outputs[match.group(1).split(".", 1)[1]]
        loc = out.location
        if out.type != "uri_file" and loc is not None:  # a folder: the default name
            out = Value(out.name, "uri_file", None,
                        Location(f"{loc.url.rstrip('/')}/parallel_run_step.txt",
                                 loc.storage_options))
        return out
    text = plan.render(name, append, "task.append_row_to")
    return Value("append_row_to", "uri_file", None, plan.paths.resolve(
        text, rjob.job.base_dir, rjob.job.where("task.append_row_to")))
