"""ParallelRunStep: a script, its settings, its inputs and its output folder.

The step is a description: it validates what it is given (the name follows
:data:`STEP_NAME`, the inputs are datasets of one kind, the mini-batch size suits
them, an output folder is given unless ``summary_only``), plans its inputs into
mini-batches (:meth:`ParallelRunStep.plan`) and fingerprints everything that
decides its output (:meth:`~ParallelRunStep.fingerprint`: resume and reuse).
:meth:`~ParallelRunStep.settings` gives it as plain values, kept in the output's
manifest, and :meth:`~ParallelRunStep.from_settings` rebuilds it from them
(``daskscore run --rerun-failed OUTPUT_DIR``). :meth:`ParallelRunStep.run` hands
it to :class:`daskscore.engine.job.Job`, which runs it on the given Dask cluster,
or on an embedded one (:mod:`daskscore.engine.cluster`) that it starts and closes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from ._protocol import PARTS_LAYOUT
from .config import (
    NameRule,
    OutputAction,
    ParallelRunConfig,
    check_name,
    parse_file_count,
    parse_size,
)
from .datasets import FileDataset, TabularDataset, dataset_from_format
from .engine.cluster import quiet_embedded_cluster
from .engine.job import Job
from .engine.jobspec import public_model_entry
from .entry_script import bundle_entry_script
from .errors import ConfigError
from .io._common import ChainedPlan
from .progress import ProgressCallback
from .result import StepRunResult
from .storage import leaving_out

__all__ = ["ParallelRunStep"]

logger = logging.getLogger("daskscore")

STEP_NAME = NameRule(
    re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"),
    "3-32 characters: lower-case letters, digits and '-', starting with a "
    "letter and not ending with '-' (e.g. 'batch-mnist')",
    min_length=3,
    max_length=32,
)
# settings that change how fast a job runs, not what it computes: a job resumes
# across them
_NOT_FINGERPRINTED = {
    "node_count",
    "process_count_per_node",
    "logging_level",
    "run_invocation_timeout",
    "init_timeout",
    "error_threshold",
    "allowed_failed_count",
    "allowed_failed_percent",
}


def _output_location(output: Any) -> tuple[Any, dict[str, Any]]:
    """Accept a path, a URL, or an object with ``path`` (and ``storage_options``)."""
    if output is None or isinstance(output, str):
        return output, {}
    options = dict(getattr(output, "storage_options", None) or {})
    if isinstance(output, os.PathLike):
        return os.fspath(output), options
    path = getattr(output, "path", None)
    if path is None:
        raise ConfigError(
            "output",
            output,
            "a folder path, a URL, or an object with a .path (such as PipelineData)",
        )
    return os.fspath(path), options


def _check_inputs(inputs: Any) -> list[FileDataset | TabularDataset]:
    """The inputs as a non-empty list of datasets of one type, else a ConfigError."""
    if isinstance(inputs, FileDataset | TabularDataset):
        inputs = [inputs]
    inputs = list(inputs or [])
    if not inputs or not all(
        isinstance(i, FileDataset | TabularDataset) for i in inputs
    ):
        raise ConfigError(
            "inputs",
            inputs,
            "a non-empty list of Dataset.File / Dataset.Tabular datasets",
        )
    kinds = {type(i) for i in inputs}
    if len(kinds) > 1:
        raise ConfigError(
            "inputs",
            inputs,
            "datasets of one type: all file datasets or all tabular",
        )
    return inputs


def _check_config_for_inputs(
    config: ParallelRunConfig, input_kind: str, inputs: Sequence[Any] = ()
) -> None:
    """The settings that depend on the inputs' kind: partition keys, batch size."""
    keys = config.partition_keys
    if keys and input_kind == "file":
        unknown = [
            k for i in inputs for k in keys if k not in (i.partition_keys or [])
        ]
        if unknown:
            raise ConfigError(
                "partition_keys",
                keys,
                "with file inputs, keys of their partition_format (Dataset.File."
                f"from_files(..., partition_format=...)); not: {sorted(set(unknown))}",
            )
    mbs = config.mini_batch_size
    if mbs is not None:
        if input_kind == "file":
            parse_file_count(mbs)
        else:
            parse_size(mbs)


def _output_folder(output: Any, config: ParallelRunConfig, step_name: str) -> str:
    """The output folder: absolute when local; a default one with summary_only."""
    if output is None:
        if config.output_action != OutputAction.SUMMARY_ONLY:
            raise ConfigError(
                "output",
                output,
                "an output folder (required with output_action='append_row')",
            )
        output = os.path.join("daskscore-output", step_name)
    folder = os.fspath(output)
    if "://" not in folder:
        folder = os.path.abspath(os.path.expanduser(folder))
    return folder


def argument_text(value: Any) -> str:
    """An argument as the script's ``sys.argv`` shows it: ``20`` -> ``"20"``, a
    pipeline parameter -> its value (``.value``, else ``.default_value``)."""
    for attr in ("value", "default_value"):
        if not isinstance(value, str | bytes | int | float) and hasattr(value, attr):
            found = getattr(value, attr)
            if found is not None or attr == "default_value":
                return str(found)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


class ParallelRunStep:
    """Score inputs in parallel with a user entry script.

    Parameters
    ----------
    name
        Step name: 3-32 characters, ``^[a-z]([-a-z0-9]*[a-z0-9])?$``.
    parallel_run_config
        The :class:`ParallelRunConfig`.
    inputs
        One or more datasets, all file datasets or all tabular datasets; their
        mini-batches are scored in the order given.
    output
        Output folder (local path or fsspec URL); required unless
        ``output_action="summary_only"``.
    arguments
        Passed to the script as ``sys.argv[1:]`` (argparse works unchanged).
    side_inputs, models, allow_reuse
        See the workspace features; accepted here for API compatibility.
    storage_options
        fsspec options of the output location (credentials are never logged).
    """

    def __init__(
        self,
        name: str,
        parallel_run_config: ParallelRunConfig,
        inputs: Sequence[FileDataset | TabularDataset],
        output: str | os.PathLike | None = None,
        arguments: Sequence[Any] | None = None,
        side_inputs: Sequence[Any] | None = None,
        models: Sequence[Any] | None = None,
        allow_reuse: bool = True,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.name = check_name("name", name, STEP_NAME)
        if not isinstance(parallel_run_config, ParallelRunConfig):
            raise ConfigError(
                "parallel_run_config",
                parallel_run_config,
                "a daskscore.ParallelRunConfig",
            )
        self.config = self.parallel_run_config = parallel_run_config
        self.inputs = _check_inputs(inputs)
        self.input_kind = self.inputs[0].input_kind
        _check_config_for_inputs(parallel_run_config, self.input_kind, self.inputs)
        output, output_options = _output_location(output)
        self.output = _output_folder(output, parallel_run_config, self.name)
        self.arguments = [argument_text(a) for a in (arguments or [])]
        self.side_inputs = list(side_inputs or [])
        self.models = list(models or [])
        self.allow_reuse = allow_reuse
        self.storage_options = dict(storage_options or output_options or {})

    def __repr__(self) -> str:
        return f"ParallelRunStep(name={self.name!r}, output={self.output!r})"

    # -- planning ----------------------------------------------------------------
    def plan(self) -> tuple[ChainedPlan, str]:
        """The mini-batches of all inputs, numbered in input order; a fingerprint.

        A sequence of :class:`MiniBatchSpec` (:class:`~daskscore.io._common.
        ChainedPlan`): a FileDataset's specs are made only when asked for. The
        step's output folder is never input, even inside an input folder
        (``storage.leaving_out``).
        """
        parts = []
        prints = []
        keys = self.config.partition_keys
        for dataset in self.inputs:
            with leaving_out(self.output, self.storage_options):
                if keys:
                    part, fingerprint = dataset.plan(None, partition_keys=keys)
                else:
                    part, fingerprint = dataset.plan(self.config.mini_batch_size)
            parts.append(part)
            prints.append(fingerprint)
        plan = ChainedPlan(parts)
        return plan, hashlib.sha256("|".join(prints).encode()).hexdigest()[:32]

    def fingerprint(self) -> str:
        """A hash of everything that decides this step's output.

        The script and its folder (bytes), the settings that affect results, the
        arguments, the models (names and versions) and the inputs' content
        fingerprints (paths, sizes, modification times). Equal fingerprints mean
        an earlier successful output can be reused (``allow_reuse``).
        """
        bundle = bundle_entry_script(
            self.config.entry_script, self.config.source_directory
        )
        _, plan_print = self.plan()
        content = self.content_fingerprint()
        return self._fingerprint(bundle.digest, plan_print + content)

    def content_fingerprint(self) -> str:
        """What :meth:`plan`'s fingerprint leaves out: each file's size and time
        of a local FileDataset folder (see ``daskscore.plan.stat-files``); ""
        when the plan's fingerprint covers everything. Slow (a stat per file):
        a job computes it beside scoring, and to check a resume."""
        # in a thread of its own too: the ContextVar of plan() does not reach it
        with leaving_out(self.output, self.storage_options):
            prints = [
                d.content_fingerprint(self.config.mini_batch_size)
                for d in self.inputs
                if isinstance(d, FileDataset)
            ]
        if not any(prints):
            return ""
        return hashlib.sha256("|".join(prints).encode()).hexdigest()[:32]

    def inputs_changed_since(self, since: float) -> bool:
        """Whether a file of a local FileDataset folder changed since ``since``
        (a Unix time) in a way :meth:`plan`'s fingerprint does not see: rewritten
        in place, same name (its change time, ``ctime``, is later). Asked only
        to resume; a stat per file. Other inputs: the fingerprint covers them."""
        with leaving_out(self.output, self.storage_options):
            return any(
                d.changed_since(since)
                for d in self.inputs
                if isinstance(d, FileDataset)
            )

    def _fingerprint(self, bundle_digest: str, plan_print: str) -> str:
        settings = {
            k: v
            for k, v in self.config.to_dict().items()
            if k not in _NOT_FINGERPRINTED
        }
        blob = json.dumps(
            {
                "script": bundle_digest,
                # an output folder of another layout starts afresh
                "parts": PARTS_LAYOUT,
                "settings": settings,
                "plan": plan_print,
                "arguments": self.arguments,
                # credentials do not decide the output
                "models": [public_model_entry(m) for m in self.models],
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    # -- running -----------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """This step as plain values (no credentials): enough to rebuild it.

        Stored in the output's manifest so that ``daskscore run --rerun-failed
        OUTPUT_DIR`` can run the step again from the output folder alone.
        """
        inputs = []
        for dataset in self.inputs:
            if isinstance(dataset, TabularDataset) and dataset.frame is not None:
                continue  # a dask DataFrame cannot be rebuilt from a file
            fmt = dataset.format if isinstance(dataset, TabularDataset) else "file"
            inputs.append(
                {
                    "format": fmt,
                    "path": dataset.path,
                    "read_options": dict(getattr(dataset, "read_options", {})),
                }
            )
            if getattr(dataset, "partition_format", None):
                inputs[-1]["partition_format"] = dataset.partition_format
        cfg = self.config.to_dict()
        for key in ("entry_script", "source_directory"):
            if cfg.get(key) and key == "source_directory":
                cfg[key] = os.path.abspath(cfg[key])
        if not cfg.get("source_directory"):
            cfg["entry_script"] = os.path.abspath(cfg["entry_script"])
        return {
            "name": self.name,
            "config": cfg,
            "inputs": inputs,
            "output": self.output,
            "arguments": list(self.arguments),
        }

    @classmethod
    def from_settings(
        cls, settings: dict[str, Any], storage_options: dict[str, Any] | None = None
    ) -> ParallelRunStep:
        """Rebuild a step from :meth:`settings` (credentials given again)."""
        datasets = [
            FileDataset(item["path"], storage_options, item["partition_format"])
            if item.get("partition_format")
            else dataset_from_format(
                item["format"], item["path"], storage_options, item.get("read_options")
            )
            for item in settings["inputs"]
        ]
        return cls(
            name=settings["name"],
            parallel_run_config=ParallelRunConfig(**settings["config"]),
            inputs=datasets,
            output=settings["output"],
            arguments=settings.get("arguments") or [],
        )

    # -- running -----------------------------------------------------------------
    def run(
        self,
        client: Any = None,
        progress: ProgressCallback | None = None,
        rerun_failed: bool = False,
        wait_for_lock: bool = False,
    ) -> StepRunResult:
        """Run the step and return its result.

        Parameters
        ----------
        client
            A ``distributed.Client`` of an existing cluster. When None, an
            embedded cluster with ``node_count x process_count_per_node`` worker
            processes (the number of cores by default) is started and closed.
        progress
            A :class:`~daskscore.progress.ProgressCallback` (e.g. ``TextProgress()``).
        rerun_failed
            Score again only the mini-batches an earlier run into the same output
            recorded as failed (e.g. after fixing the script), keep the others,
            and rebuild the collected output.
        wait_for_lock
            One job writes into an output folder at a time (it holds
            ``.daskscore/lock.json``). When another job holds it: False raises
            :class:`~daskscore.errors.JobError` naming that job at once; True waits
            until it ends. A lock whose job died is taken over.

        Raises
        ------
        EntryScriptError
            The script cannot be loaded (before any data is processed).
        DatasetError
            An input cannot be listed.
        JobError
            The job could not run: the output folder is in use by another job
            (without ``wait_for_lock``), the cluster or the output storage failed.
        """
        job = Job(
            self,
            client,
            progress or ProgressCallback(),
            rerun_failed=rerun_failed,
            wait_for_lock=wait_for_lock,
        )
        if client is not None:
            return job.run()
        with quiet_embedded_cluster():
            return job.run()
