"""ParallelRunStep: plan, submit, watch thresholds, commit, report.

The client side of a job. It plans the inputs into mini-batches, starts (or
joins) a Dask cluster, registers the :class:`~daskscore.plugin.ScoringPlugin`,
submits packs of mini-batches, consumes their small records as they complete
(progress and live thresholds; cancelling on breach), and at the end assembles
the collected output from the committed parts and writes the reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from .config import OutputAction, ParallelRunConfig, parse_file_count, parse_size
from .datasets import FileDataset, MiniBatchSpec, TabularDataset
from .entry_script import bundle_entry_script
from .exceptions import ConfigError, EntryScriptError, JobError
from .progress import JobProgress, ProgressCallback
from .reports import result_text, write_reports
from .result import StepRunResult
from .sinks import SCRIPT_OUTPUT_DIR, StateStore, assemble_output, write_atomic

__all__ = ["ParallelRunStep"]

logger = logging.getLogger("daskscore")

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_PACK = 64
_PROGRESS_LINES = 40
# settings that change how fast a job runs, not what it computes: a job resumes
# across them
_NOT_FINGERPRINTED = {"node_count", "process_count_per_node", "logging_level",
                      "run_invocation_timeout", "error_threshold",
                      "allowed_failed_count", "allowed_failed_percent"}


def _check_name(name: Any) -> str:
    allowed = (
        "3-32 characters: lower-case letters, digits and '-', starting with a "
        "letter and not ending with '-' (e.g. 'batch-mnist')"
    )
    if not isinstance(name, str) or not 3 <= len(name) <= 32 or not _NAME_RE.match(name):
        raise ConfigError("name", name, allowed)
    return name


def _free_dashboard_address() -> str:
    """Dask's usual dashboard port when it is free, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8787))
        except OSError:
            return "127.0.0.1:0"
    return "127.0.0.1:8787"


def _threshold_breach(cfg: ParallelRunConfig, failed_items: int, failed_mbs: int,
                      total_mbs: int) -> str | None:
    if cfg.error_threshold != -1 and failed_items > cfg.error_threshold:
        return (f"error_threshold={cfg.error_threshold} exceeded: {failed_items} "
                "items failed")
    if cfg.allowed_failed_count not in (None, -1) and failed_mbs > cfg.allowed_failed_count:
        return (f"allowed_failed_count={cfg.allowed_failed_count} exceeded: "
                f"{failed_mbs} mini-batches failed")
    if cfg.allowed_failed_percent is not None and total_mbs:
        percent = 100.0 * failed_mbs / total_mbs
        if percent > cfg.allowed_failed_percent:
            return (f"allowed_failed_percent={cfg.allowed_failed_percent:g} exceeded: "
                    f"{failed_mbs} of {total_mbs} mini-batches ({percent:.1f}%) failed")
    return None


@contextlib.contextmanager
def _quiet_embedded_cluster():
    """Hide the embedded scheduler's INFO chatter (it runs in this process)."""
    loggers = [logging.getLogger(n) for n in ("distributed", "bokeh", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.ERROR))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _cancel_job(plugin_name: str, dask_worker=None) -> bool:
    """Runs on every worker (``client.run``): stop starting new mini-batches."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker else None
    if plugin is not None:
        plugin.cancelled = True
    return plugin is not None


def _plugin_problem(plugin_name: str, dask_worker=None):
    """Runs on every worker: the import problem of the entry script, if any."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker else None
    return getattr(plugin, "import_problem", None)


def _output_location(output: Any) -> tuple[Any, dict[str, Any]]:
    """Accept a path, a URL, or an object with ``path`` (and ``storage_options``)."""
    if output is None or isinstance(output, str | os.PathLike):
        return (os.fspath(output) if output is not None else None), {}
    path = getattr(output, "path", None)
    if path is None:
        raise ConfigError("output", output, "a folder path, a URL, or an object with "
                          "a .path (such as PipelineData)")
    return os.fspath(path), dict(getattr(output, "storage_options", None) or {})


def _model_entry(model: Any) -> dict[str, Any]:
    name = getattr(model, "name", None)
    path = getattr(model, "path", None)
    if not name or path is None:
        raise ConfigError("models", model, "registered models (objects with .name, "
                          ".version and .path), e.g. ds.Model(ws, 'mnist')")
    entry = {"name": name, "version": getattr(model, "version", None),
             "path": os.fspath(path)}
    options = getattr(model, "storage_options", None)
    if options:
        entry["storage_options"] = dict(options)
    return entry


def _models_env(models: list[Any]) -> dict[str, str]:
    if not models:
        return {}
    return {"DASKSCORE_MODELS": json.dumps([_model_entry(m) for m in models],
                                           default=str)}


def _named_inputs(inputs: list[Any], side_inputs: list[Any]) -> dict[str, Any]:
    """What ``EntryScript().inputs[name]`` gives for named and side inputs."""
    out: dict[str, Any] = {}
    for dataset in inputs:
        if getattr(dataset, "input_name", None):
            out[dataset.input_name] = (
                dataset.path if not isinstance(dataset.path, list)
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
        self.name = _check_name(name)
        if not isinstance(parallel_run_config, ParallelRunConfig):
            raise ConfigError("parallel_run_config", parallel_run_config,
                              "a daskscore.ParallelRunConfig")
        self.config = self.parallel_run_config = parallel_run_config
        if isinstance(inputs, FileDataset | TabularDataset):
            inputs = [inputs]
        inputs = list(inputs or [])
        if not inputs or not all(isinstance(i, FileDataset | TabularDataset)
                                 for i in inputs):
            raise ConfigError("inputs", inputs,
                              "a non-empty list of Dataset.File / Dataset.Tabular "
                              "datasets")
        kinds = {type(i) for i in inputs}
        if len(kinds) > 1:
            raise ConfigError("inputs", inputs,
                              "datasets of one type: all file datasets or all tabular")
        self.inputs = inputs
        self.input_kind = inputs[0].input_kind
        if parallel_run_config.partition_keys and self.input_kind == "file":
            raise ConfigError("partition_keys", parallel_run_config.partition_keys,
                              "only with tabular inputs (Dataset.Tabular.*)")
        mbs = parallel_run_config.mini_batch_size
        if mbs is not None:
            if self.input_kind == "file":
                parse_file_count(mbs)
            else:
                parse_size(mbs)
        output, output_options = _output_location(output)
        if output is None:
            if parallel_run_config.output_action != OutputAction.SUMMARY_ONLY:
                raise ConfigError("output", output,
                                  "an output folder (required with "
                                  "output_action='append_row')")
            output = os.path.join("daskscore-output", self.name)
        self.output = os.fspath(output)
        if "://" not in self.output:
            self.output = os.path.abspath(os.path.expanduser(self.output))
        self.arguments = [str(a) for a in (arguments or [])]
        self.side_inputs = list(side_inputs or [])
        self.models = list(models or [])
        self.allow_reuse = allow_reuse
        self.storage_options = dict(storage_options or output_options or {})

    def __repr__(self) -> str:
        return f"ParallelRunStep(name={self.name!r}, output={self.output!r})"

    # -- planning ----------------------------------------------------------------
    def plan(self) -> tuple[list[MiniBatchSpec], str]:
        """The mini-batches of all inputs, numbered in input order, and a fingerprint."""
        specs: list[MiniBatchSpec] = []
        prints = []
        keys = self.config.partition_keys
        for dataset in self.inputs:
            if keys:
                part, fingerprint = dataset.plan(None, partition_keys=keys)
            else:
                part, fingerprint = dataset.plan(self.config.mini_batch_size)
            offset = len(specs)
            from dataclasses import replace

            specs.extend(replace(s, index=s.index + offset) for s in part)
            prints.append(fingerprint)
        return specs, hashlib.sha256("|".join(prints).encode()).hexdigest()[:32]

    def fingerprint(self) -> str:
        """A hash of everything that decides this step's output.

        The script and its folder (bytes), the settings that affect results, the
        arguments, the models (names and versions) and the inputs' content
        fingerprints (paths, sizes, modification times). Equal fingerprints mean
        an earlier successful output can be reused (``allow_reuse``).
        """
        bundle = bundle_entry_script(self.config.entry_script,
                                     self.config.source_directory)
        _, plan_print = self.plan()
        return self._fingerprint(bundle.digest, plan_print)

    def _fingerprint(self, bundle_digest: str, plan_print: str) -> str:
        settings = {k: v for k, v in self.config.to_dict().items()
                    if k not in _NOT_FINGERPRINTED}
        blob = json.dumps({
            "script": bundle_digest, "settings": settings, "plan": plan_print,
            "arguments": self.arguments,
            "models": [_model_entry(m) for m in self.models],
        }, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    # -- running -----------------------------------------------------------------
    def run(self, client: Any = None,
            progress: ProgressCallback | None = None) -> StepRunResult:
        """Run the step and return its result.

        Parameters
        ----------
        client
            A ``distributed.Client`` of an existing cluster. When None, a
            ``LocalCluster`` with ``node_count x process_count_per_node`` worker
            processes (the number of cores by default) is started and closed.
        progress
            A :class:`~daskscore.progress.ProgressCallback` (e.g. ``TextProgress()``).

        Raises
        ------
        EntryScriptError
            The script cannot be loaded (before any data is processed).
        DatasetError
            An input cannot be listed.
        """
        job = _Job(self, client, progress or ProgressCallback())
        if client is not None:
            return job.run()
        with _quiet_embedded_cluster():
            return job.run()


class _Job:
    """One run of a step (client side)."""

    def __init__(self, step: ParallelRunStep, client: Any,
                 progress: ProgressCallback) -> None:
        self.step = step
        self.cfg = step.config
        self.client = client
        self.progress_cb = progress
        self.cluster = None
        self.own_client = None
        self.plugin_name = f"daskscore-{step.name}-{uuid.uuid4().hex[:8]}"
        self.records: dict[int, dict[str, Any]] = {}
        self.progress_lines: list[str] = []
        self.reason = ""
        self._sys_log_dir: str | None = None

    # -- cluster -----------------------------------------------------------------
    def _workers_wanted(self) -> int:
        cfg = self.cfg
        if cfg.process_count_per_node:
            return cfg.node_count * cfg.process_count_per_node
        return max(1, os.cpu_count() or 1)

    def _connect(self):
        if self.client is not None:
            return self.client
        from distributed import Client

        from .cluster import start_embedded_cluster

        n = self._workers_wanted()
        logger.info("starting an embedded cluster with %d worker processes", n)
        self.cluster = start_embedded_cluster(
            n, _free_dashboard_address(), log_dir=self._sys_log_dir
        )
        self.own_client = Client(self.cluster)
        self.own_client.wait_for_workers(n, timeout=120)
        return self.own_client

    def _close_cluster(self) -> None:
        if self.own_client is not None:
            self.own_client.close()
            self.own_client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    # -- main --------------------------------------------------------------------
    def run(self) -> StepRunResult:
        step, cfg = self.step, self.cfg
        started = time.perf_counter()
        bundle = bundle_entry_script(cfg.entry_script, cfg.source_directory)
        t_plan = time.perf_counter()
        specs, plan_print = step.plan()
        plan_seconds = time.perf_counter() - t_plan
        store = StateStore(step.output, step.storage_options)
        fingerprint = step._fingerprint(bundle.digest, plan_print)
        manifest = store.read_manifest()
        if manifest and manifest.get("fingerprint") == fingerprint:
            self.records = {i: r for i, r in store.load_records().items()
                            if i < len(specs)}
        else:
            store.reset()
            store.write_manifest({
                "fingerprint": fingerprint, "step": step.name,
                "mini_batches": len(specs), "created": time.time(),
            })
        resumed = len(self.records)
        if store.local:
            self._sys_log_dir = store.path("logs", "sys")
        script_display = os.path.join(cfg.source_directory or "", cfg.entry_script)
        try:
            client = self._connect()
            job = self._job_spec(store, bundle, script_display)
            self._register(client, job, script_display, store)
            todo = [s for s in specs if s.index not in self.records]
            self._progress = JobProgress(
                total_mini_batches=len(specs),
                total_items=self._known_total(specs),
                started=started,
            )
            for record in self.records.values():
                self._count(record)
            self.progress_lines.append(
                f"Scheduled {len(specs)} mini-batches in {plan_seconds:.2f} s"
                + (f" ({resumed} already committed, resuming)" if resumed else "")
            )
            self.progress_cb.start(self._progress, getattr(client, "dashboard_link", None))
            self.reason = self._breach() or ""
            if not self.reason:
                self._execute(client, todo, specs)
            client.unregister_worker_plugin(self.plugin_name)
        except BaseException:
            self._close_cluster()
            raise
        # parts committed by mini-batches still running when the job was cancelled
        for index, record in store.load_records(known=self.records).items():
            if index < len(specs):
                self.records[index] = record
        output_file = None
        try:
            if cfg.output_action == OutputAction.APPEND_ROW:
                output_file, _ = assemble_output(
                    store,
                    [i for i, r in self.records.items() if r.get("has_output")],
                    cfg.output_format, cfg.output_file_name,
                )
        finally:
            self._close_cluster()
        return self._finish(store, specs, started, output_file, resumed)

    def _job_spec(self, store: StateStore, bundle, script_display: str) -> dict:
        step, cfg = self.step, self.cfg
        first = step.inputs[0]
        return {
            "bundle": bundle.zip_bytes,
            "script_name": bundle.script_name,
            "script_display": script_display,
            "source_display": os.path.dirname(os.path.abspath(os.path.join(
                cfg.source_directory or "", cfg.entry_script))) if not cfg.source_directory
            else os.path.abspath(cfg.source_directory),
            "arguments": step.arguments,
            "environment_variables": dict(cfg.environment_variables or {}),
            "logging_level": cfg.logging_level,
            "run_invocation_timeout": float(cfg.run_invocation_timeout),
            "run_max_try": cfg.run_max_try,
            "init_timeout": max(600.0, 5 * float(cfg.run_invocation_timeout)),
            "output_action": str(cfg.output_action),
            "output_format": cfg.output_format,
            "output_url": store.output_url,
            "output_storage_options": store.storage_options,
            "parts_url": store.parts_url,
            "records_url": store.records_url,
            "log_dir": store.path("logs"),
            "log_url": store.url(store.path("logs")),
            "logs_local": store.local,
            "script_output_dir": store.path(SCRIPT_OUTPUT_DIR),
            "script_output_url": store.url(store.path(SCRIPT_OUTPUT_DIR)),
            "input_storage_options": dict(getattr(first, "storage_options", {}) or {}),
            "read_options": {**(getattr(first, "read_options", {}) or {}),
                             "format": getattr(first, "format", "files")},
            "named_inputs": _named_inputs(step.inputs, step.side_inputs),
            "runner_env": _models_env(step.models),
        }

    def _register(self, client, job: dict, script_display: str,
                  store: StateStore) -> None:
        from .plugin import ScoringPlugin

        if store.local:
            os.makedirs(store.path("logs"), exist_ok=True)
        client.register_plugin(ScoringPlugin(self.plugin_name, job),
                               name=self.plugin_name)
        problems = client.run(_plugin_problem, self.plugin_name)
        for worker, problem in sorted(problems.items()):
            if problem:
                client.unregister_worker_plugin(self.plugin_name)
                error = EntryScriptError(script_display, problem[0], problem[1])
                self._write_early_failure(store, str(error), problem[1])
                raise error

    def _write_early_failure(self, store: StateStore, message: str,
                             details: str) -> None:
        text = (f"Status: Failed\nStep: {self.step.name}\nRoot cause: {message}\n"
                "No data was processed.\n" + (f"\n{details}\n" if details else ""))
        write_atomic(store.fs, f"{store.path('logs')}/job_result.txt", text.encode())

    @staticmethod
    def _known_total(specs: list[MiniBatchSpec]) -> int | None:
        if any(s.items is None for s in specs):
            return None
        return sum(s.items or 0 for s in specs)

    def _packs(self, client, todo: list[MiniBatchSpec]) -> list[list[MiniBatchSpec]]:
        try:
            workers = max(1, len(client.scheduler_info()["workers"]))
        except Exception:  # noqa: BLE001 - only a sizing hint
            workers = 1
        size = max(1, min(_MAX_PACK, len(todo) // (workers * 8)))
        return [todo[i:i + size] for i in range(0, len(todo), size)]

    def _execute(self, client, todo: list[MiniBatchSpec],
                 specs: list[MiniBatchSpec]) -> None:
        from distributed import as_completed

        from .execution import score_pack

        step = self.step
        futures = []
        pending_specs: dict[str, list[MiniBatchSpec]] = {}
        frames = {s.index: s for s in todo if s.kind == "frame"}
        if frames:
            import dask

            offset = 0
            for dataset in step.inputs:
                parts = dataset.frame.to_delayed()
                for i, part in enumerate(parts):
                    spec = frames.get(offset + i)
                    if spec is None:
                        continue
                    task = dask.delayed(score_pack, pure=False)(
                        self.plugin_name, [spec], part,
                        dask_key_name=f"{step.name}-mb-{spec.index:06d}-"
                                      f"{self.plugin_name[-8:]}",
                    )
                    future = client.compute(task)
                    futures.append(future)
                    pending_specs[future.key] = [spec]
                offset += len(parts)
        rest = [s for s in todo if s.kind != "frame"]
        for pack in self._packs(client, rest):
            key = (f"{step.name}-mb-{pack[0].index:06d}-{pack[-1].index:06d}-"
                   f"{self.plugin_name[-8:]}")
            future = client.submit(score_pack, self.plugin_name, pack, key=key,
                                   pure=False)
            futures.append(future)
            pending_specs[future.key] = pack
        stream = as_completed(futures, with_results=False)
        breach = None
        for future in stream:
            if future.status == "error":
                exc = future.exception()
                records = self._failed_pack(pending_specs.get(future.key, []), exc)
            elif future.status == "cancelled":
                continue
            else:
                records = future.result()
            future.release()
            for record in records:
                if record["index"] in self.records:
                    continue
                self.records[record["index"]] = record
                self._count(record)
                self.progress_cb.update(self._progress)
                self._maybe_progress_line()
                breach = breach or self._breach()
            if breach:
                self.reason = breach
                logger.warning("stopping the job: %s", breach)
                client.run(_cancel_job, self.plugin_name)
                for f in futures:
                    if not f.done():
                        f.cancel()
                break

    def _failed_pack(self, specs: list[MiniBatchSpec], exc: BaseException) -> list:
        from distributed import KilledWorker

        if not isinstance(exc, KilledWorker):
            raise JobError(
                f"internal error while scoring mini-batches "
                f"{[s.index for s in specs]}: {type(exc).__name__}: {exc} "
                "(this is a daskscore bug; please report it with logs/)"
            ) from exc
        records = []
        for spec in specs:
            if spec.index in self.records:
                continue
            n = spec.items or 1
            error = ("the worker scoring this mini-batch died repeatedly "
                     f"({exc}); see the worker logs")
            records.append({
                "index": spec.index, "input": spec.describe(), "items": n,
                "succeeded": 0, "failed": n, "status": "WORKER_DIED",
                "failed_mini_batch": True, "error": error, "warning": "",
                "has_output": False, "worker": "", "tries": [{
                    "try": 1, "worker": "", "items": n, "succeeded": 0, "failed": n,
                    "elapsed_seconds": 0.0, "run_seconds": 0.0, "read_seconds": 0.0,
                    "status": "WORKER_DIED", "error": error, "traceback": "",
                }],
            })
        return records

    def _count(self, record: dict[str, Any]) -> None:
        p = self._progress
        p.done_mini_batches += 1
        p.succeeded_items += record["succeeded"]
        p.failed_items += record["failed"]
        if record.get("failed_mini_batch"):
            p.failed_mini_batches += 1

    def _breach(self) -> str | None:
        p = self._progress
        return _threshold_breach(self.cfg, p.failed_items, p.failed_mini_batches,
                                 p.total_mini_batches)

    def _maybe_progress_line(self) -> None:
        p = self._progress
        every = max(1, math.ceil(p.total_mini_batches / _PROGRESS_LINES))
        if p.done_mini_batches % every == 0 or p.done_mini_batches == p.total_mini_batches:
            self.progress_lines.append(p.line())

    # -- the end -----------------------------------------------------------------
    def _finish(self, store: StateStore, specs, started: float,
                output_file: str | None, resumed: int) -> StepRunResult:
        step, cfg = self.step, self.cfg
        records = [self.records[i] for i in sorted(self.records)]
        succeeded = sum(r["succeeded"] for r in records)
        failed = sum(r["failed"] for r in records)
        failed_mbs = sum(1 for r in records if r.get("failed_mini_batch"))
        tries = sum(len(r.get("tries", [])) for r in records)
        status = "Failed" if self.reason else "Completed"
        not_run = len(specs) - len(records)
        if status == "Completed" and not_run:
            status = "Failed"
            self.reason = f"{not_run} mini-batches were not scored"
        elapsed = time.perf_counter() - started
        warnings = sorted({r["warning"] for r in records if r.get("warning")})
        for w in warnings[:5]:
            logger.warning("%s", w)
        summary = {
            "status": status,
            "step": step.name,
            "reason": self.reason,
            "total_items": succeeded + failed,
            "succeeded_items": succeeded,
            "failed_items": failed,
            "mini_batches": len(specs),
            "processed_mini_batches": len(records),
            "failed_mini_batches": failed_mbs,
            "tries": tries,
            "elapsed_seconds": round(elapsed, 3),
            "items_per_second": round((succeeded + failed) / elapsed, 3)
            if elapsed > 0 else 0.0,
            "resumed_mini_batches": resumed,
            "output_dir": store.output_url,
            "output_file": output_file,
            "output_action": str(cfg.output_action),
            "warnings": warnings[:20],
            "first_errors": [
                f"mini-batch {r['index']} ({r['input']}): {r['status']}: {r['error']}"
                for r in records if r.get("failed_mini_batch")
            ][:5],
        }
        self.progress_lines.append(self._progress.line())
        write_reports(store.fs, store.path("logs"), summary, records,
                      self.progress_lines)
        result = StepRunResult(
            status=status,
            total_items=summary["total_items"],
            succeeded_items=succeeded,
            failed_items=failed,
            mini_batches=len(specs),
            failed_mini_batches=failed_mbs,
            output_dir=store.output_url,
            output_file=output_file,
            reason=self.reason,
            tries=tries,
            elapsed_seconds=elapsed,
            resumed_mini_batches=resumed,
            output_format=cfg.output_format,
            storage_options=step.storage_options,
        )
        self.progress_cb.finish(self._progress, result)
        logger.info("%s", result_text(summary).strip())
        return result

