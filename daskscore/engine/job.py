"""One run of a step, client side: plan, submit, watch, commit, report.

``Job.run()`` plans the inputs into mini-batches, starts (or joins) a Dask
cluster, registers the :class:`~daskscore.worker.plugin.ScoringPlugin`, submits packs of
mini-batches, consumes their small records as they complete (progress, live
thresholds, cancelling on breach or on request), and at the end assembles the
collected output from the committed parts and writes the reports. While it runs,
its state is published on the scheduler (see ``dashboard.py``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from typing import Any

from .. import _settings
from .._protocol import SCRIPT_OUTPUT_DIR, MiniBatchSpec
from ..config import OutputAction, ParallelRunConfig
from ..entry_script import bundle_entry_script
from ..errors import DaskScoreError, EntryScriptError, JobError
from ..output.assemble import assemble_output
from ..output.reports import result_text, write_reports
from ..output.store import StateStore, write_atomic
from ..progress import JobProgress, ProgressCallback, dashboard_page_link
from ..result import StepRunResult
from ..scheduler.dashboard import install_routes
from ..scheduler.reaping import stale_jobs
from ..worker.control import cancel_plugin, plugin_problem
from ..worker.plugin import ScoringPlugin
from ..worker.tasks import score_pack
from .cluster import free_dashboard_address, start_embedded_cluster
from .jobspec import model_options, models_env, named_inputs
from .placement import node_of, pack_mini_batches, select_workers
from .thresholds import threshold_breach

__all__ = ["Job"]

logger = logging.getLogger("daskscore")

_PROGRESS_LINES = 40


class Job:
    """One run of a :class:`~daskscore.ParallelRunStep`."""

    def __init__(
        self,
        step: Any,
        client: Any,
        progress: ProgressCallback,
        rerun_failed: bool = False,
        job_id: str | None = None,
        bundle: Any = None,
    ) -> None:
        self.step = step
        self.cfg: ParallelRunConfig = step.config
        self.client = client
        self.progress_cb = progress
        self.rerun_failed = rerun_failed
        self.job_id = job_id or f"{step.name}-{uuid.uuid4().hex[:8]}"
        self.plugin_name = f"daskscore-{self.job_id}"
        self.resource = f"daskscore-{self.job_id}"
        self.allowed_names: list[str] | None = None
        self.bundle = bundle
        self.cluster = None
        self.own_client = None
        self.records: dict[int, dict[str, Any]] = {}
        self.progress_lines: list[str] = []
        self.reason = ""
        self.sys_log_dir: str | None = None
        self.workers: list[str] | None = None
        self._last_publish = 0.0
        self._published = False
        self._cancel_requested = threading.Event()
        self._done = threading.Event()

    # -- cluster -----------------------------------------------------------------
    def _workers_wanted(self) -> int:
        cfg = self.cfg
        if cfg.process_count_per_node:
            return cfg.node_count * cfg.process_count_per_node
        return max(1, os.cpu_count() or 1)

    def _connect(self):
        if self.client is not None:
            self.workers = self._pick_workers(self.client)
            return self.client
        from distributed import Client

        n = self._workers_wanted()
        logger.info("starting an embedded cluster with %d worker processes", n)
        self.cluster = start_embedded_cluster(
            n, free_dashboard_address(), log_dir=self.sys_log_dir
        )
        self.own_client = Client(self.cluster)
        self.own_client.wait_for_workers(n, timeout=120)
        return self.own_client

    def _pick_workers(self, client) -> list[str] | None:
        """Workers of an existing cluster this job may use (node_count x processes)."""
        cfg = self.cfg
        wanted_nodes = cfg.node_count
        wait_s = _settings.get("worker-wait")
        deadline = time.monotonic() + wait_s
        while True:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            chosen = select_workers(workers, cfg.node_count, cfg.process_count_per_node)
            nodes = {node_of(a, workers[a]) for a in chosen}
            if len(nodes) >= wanted_nodes and chosen:
                break
            if time.monotonic() >= deadline:
                raise JobError(
                    f"node_count={wanted_nodes} but the cluster at "
                    f"{client.scheduler.address} has {len(nodes)} node(s) with "
                    f"{len(workers)} worker(s) after waiting {wait_s:g} s; "
                    "start more workers, lower node_count, or set the Dask "
                    "setting daskscore.worker-wait (DASK_DASKSCORE__WORKER_WAIT) "
                    "to wait longer"
                )
            time.sleep(0.5)
        self.allowed_names = [str(workers[a].get("name", a)) for a in chosen]
        extra = len(workers) - len(chosen)
        if extra:
            logger.info(
                "using %d of the cluster's %d workers (node_count=%d, "
                "process_count_per_node=%s)",
                len(chosen),
                len(workers),
                cfg.node_count,
                cfg.process_count_per_node,
            )
        return chosen

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
        try:
            bundle = self.bundle or bundle_entry_script(
                cfg.entry_script, cfg.source_directory
            )
        except EntryScriptError as exc:
            store = StateStore(step.output, step.storage_options)
            self._write_early_failure(store, str(exc), exc.details)
            raise
        t_plan = time.perf_counter()
        specs, plan_print = step.plan()
        plan_seconds = time.perf_counter() - t_plan
        try:
            store = StateStore(step.output, step.storage_options)
            resumed = self._load_state(
                store, step._fingerprint(bundle.digest, plan_print), len(specs)
            )
        except (DaskScoreError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the output location is the user's storage
            from ..storage import describe_storage_error

            raise JobError(
                "cannot use the output folder "
                + describe_storage_error(exc, step.output, step.storage_options)
            ) from exc
        if store.local:
            self.sys_log_dir = store.path("logs", "sys")
        script_display = os.path.join(cfg.source_directory or "", cfg.entry_script)
        self._progress = JobProgress(
            total_mini_batches=len(specs),
            total_items=self._known_total(specs),
            started=started,
        )
        for record in self.records.values():
            self._count(record)
        try:
            client = self._connect()
            self._client_id = getattr(client, "id", None)
            self._reap_stale_jobs(client)
            self._install_dashboard(client)
            job = self._job_spec(store, bundle, script_display)
            self._register(client, job, script_display, store)
            todo = [s for s in specs if s.index not in self.records]
            self.progress_lines.append(
                f"Scheduled {len(specs)} mini-batches in {plan_seconds:.2f} s"
                + (f" ({resumed} already committed, resuming)" if resumed else "")
            )
            self.progress_cb.start(
                self._progress, getattr(client, "dashboard_link", None)
            )
            self._publish(client, "Running", force=True)
            self.reason = self._breach() or ""
            if not self.reason:
                self._execute(client, todo)
            try:
                client.unregister_worker_plugin(self.plugin_name)
            except Exception as exc:  # noqa: BLE001 - a worker left mid-way
                logger.warning("could not remove the job from every worker: %s", exc)
        except BaseException:
            self._done.set()
            self._close_cluster()
            raise
        self._done.set()
        output_file = None
        try:
            try:
                # parts committed by mini-batches still running when the job was
                # cancelled
                for index, record in store.load_records(known=self.records).items():
                    if index < len(specs):
                        self.records[index] = record
                        self._count(record)
                if cfg.output_action == OutputAction.APPEND_ROW:
                    output_file, _ = assemble_output(
                        store,
                        [i for i, r in self.records.items() if r.get("has_output")],
                        cfg.output_format,
                        cfg.output_file_name,
                    )
                result = self._finish(store, specs, started, output_file, resumed)
            except Exception as exc:
                from ..storage import is_storage_error

                if not is_storage_error(exc):
                    raise
                raise self._storage_failure(
                    "cannot write the collected output and the logs to", exc
                ) from exc
            self._publish(client, result.status, force=True, result=result)
        finally:
            self._close_cluster()
        return result

    def _storage_failure(self, what: str, exc: BaseException) -> JobError:
        """One line for an output folder that failed mid-job, and what to do."""
        from ..storage import describe_storage_error

        where = describe_storage_error(exc, self.step.output, self.step.storage_options)
        return JobError(
            f"{what} {where}; the mini-batches committed so far are kept: run the "
            "same step again to resume"
        )

    def _load_state(self, store: StateStore, fingerprint: str, n_specs: int) -> int:
        """Resume from committed records when nothing changed; return their count.

        With ``rerun_failed`` the records of failed mini-batches are dropped (so
        they are scored again) and the others kept, whatever changed.
        """
        manifest = store.read_manifest()
        same = bool(manifest) and manifest.get("fingerprint") == fingerprint
        if self.rerun_failed:
            if not manifest:
                raise JobError(
                    f"--rerun-failed: {store.output_url} holds no earlier run of "
                    "this step"
                )
            if manifest.get("mini_batches") != n_specs:
                raise JobError(
                    f"--rerun-failed: the inputs of {store.output_url} changed "
                    f"({manifest.get('mini_batches')} mini-batches then, {n_specs} "
                    "now); rerun the whole job instead"
                )
            kept = {}
            for index, record in store.load_records().items():
                if record.get("failed_mini_batch"):
                    store.fs.rm_file(f"{store.records}/{index:09d}.json")
                elif index < n_specs:
                    kept[index] = record
            self.records = kept
            if not same:
                self._write_manifest(store, fingerprint, n_specs)
            return len(kept)
        if same:
            self.records = {
                i: r for i, r in store.load_records().items() if i < n_specs
            }
            return len(self.records)
        store.reset()
        self._write_manifest(store, fingerprint, n_specs)
        return 0

    def _write_manifest(self, store: StateStore, fingerprint: str, n: int) -> None:
        store.write_manifest(
            {
                "fingerprint": fingerprint,
                "step": self.step.name,
                "mini_batches": n,
                "created": time.time(),
                "settings": self.step.settings(),
            }
        )

    def _job_spec(self, store: StateStore, bundle, script_display: str) -> dict:
        step, cfg = self.step, self.cfg
        if cfg.source_directory:
            source_display = os.path.abspath(cfg.source_directory)
        else:
            source_display = os.path.dirname(os.path.abspath(cfg.entry_script))
        return {
            "bundle": bundle.zip_bytes,
            "script_name": bundle.script_name,
            "script_display": script_display,
            "source_display": source_display,
            "arguments": step.arguments,
            "environment_variables": dict(cfg.environment_variables or {}),
            "logging_level": cfg.logging_level,
            "run_invocation_timeout": float(cfg.run_invocation_timeout),
            "run_max_try": cfg.run_max_try,
            "init_timeout": _settings.init_timeout(cfg.run_invocation_timeout),
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
            # how to read each input (``MiniBatchSpec.source``)
            "sources": [
                {
                    "storage_options": dict(getattr(d, "storage_options", {}) or {}),
                    "read_options": {
                        **(getattr(d, "read_options", {}) or {}),
                        "format": getattr(d, "format", "files"),
                    },
                }
                for d in step.inputs
            ],
            "named_inputs": named_inputs(step.inputs, step.side_inputs),
            "runner_env": models_env(step.models),
            "model_options": model_options(step.models),
            "allowed_names": self.allowed_names,
            "prefetch": _settings.get("prefetch"),
            "runner_read_timeout": _settings.get("runner.read-timeout"),
            "runner_shutdown_timeout": _settings.get("runner.shutdown-timeout"),
            "runner_init_failures": _settings.get("runner.init-failures"),
            # with a failure budget, every failure must reach the client at once
            "stop_on_failure": cfg.error_threshold != -1
            or cfg.allowed_failed_count not in (None, -1)
            or cfg.allowed_failed_percent is not None,
            "resource": self.resource if self.allowed_names is not None else None,
        }

    def _register(
        self, client, job: dict, script_display: str, store: StateStore
    ) -> None:
        if store.local:
            os.makedirs(store.path("logs"), exist_ok=True)
        client.register_plugin(
            ScoringPlugin(self.plugin_name, job), name=self.plugin_name
        )
        problems = client.run(plugin_problem, self.plugin_name, workers=self.workers)
        for _worker, problem in sorted(problems.items()):
            if problem:
                client.unregister_worker_plugin(self.plugin_name)
                error = EntryScriptError(script_display, problem[0], problem[1])
                self._write_early_failure(store, str(error), problem[1])
                raise error

    def _write_early_failure(
        self, store: StateStore, message: str, details: str
    ) -> None:
        text = (
            f"Status: Failed\nStep: {self.step.name}\nRoot cause: {message}\n"
            "No data was processed.\n" + (f"\n{details}\n" if details else "")
        )
        write_atomic(store.fs, f"{store.path('logs')}/job_result.txt", text.encode())

    @staticmethod
    def _known_total(specs: list[MiniBatchSpec]) -> int | None:
        if any(s.items is None for s in specs):
            return None
        return sum(s.items or 0 for s in specs)

    def _packs(self, client, todo: list[MiniBatchSpec]) -> list[list[MiniBatchSpec]]:
        if self.workers is not None:
            workers = len(self.workers)
        else:
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
        return pack_mini_batches(todo, workers)

    def _execute(self, client, todo: list[MiniBatchSpec]) -> None:
        from distributed import as_completed

        step = self.step
        futures = []
        pending_specs: dict[str, list[MiniBatchSpec]] = {}
        placement = {"resources": {self.resource: 1}} if self.workers else {}
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
                        self.plugin_name,
                        [spec],
                        part,
                        dask_key_name=f"{step.name}-mb-{spec.index:06d}-"
                        f"{self.job_id[-8:]}",
                    )
                    future = client.compute(task, priority=-spec.index, **placement)
                    futures.append(future)
                    pending_specs[future.key] = [spec]
                offset += len(parts)
        rest = [s for s in todo if s.kind != "frame"]

        def submit(pack: list[MiniBatchSpec], suffix: str = ""):
            # earlier mini-batches first: the output streams in order and an early
            # failure is seen early
            key = (
                f"{step.name}-mb-{pack[0].index:06d}-{pack[-1].index:06d}-"
                f"{self.job_id[-8:]}{suffix}"
            )
            future = client.submit(
                score_pack,
                self.plugin_name,
                pack,
                key=key,
                pure=False,
                priority=-pack[0].index,
                **placement,
            )
            futures.append(future)
            pending_specs[future.key] = pack
            return future

        for pack in self._packs(client, rest):
            submit(pack)
        watcher = threading.Thread(
            target=self._watch_cancel,
            args=(client, futures),
            daemon=True,
            name="daskscore-cancel-watch",
        )
        watcher.start()
        breach = None
        stream = as_completed(futures, with_results=False)
        for future in stream:
            if future.status == "cancelled":
                continue
            if future.status == "error":
                try:
                    records = self._failed_pack(
                        pending_specs.get(future.key, []), future.exception()
                    )
                except JobError:
                    self._stop(client, futures)
                    raise
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
                breach = breach or self._breach() or self._init_watchdog(record)
            self._publish(client, "Running")
            # a pack returns early after a failure so that the failure is counted
            # at once; the rest of the pack goes back into the queue
            done = {r["index"] for r in records}
            rest = [p for p in pending_specs.pop(future.key, []) if p.index not in done]
            if rest and not breach and not self.reason:
                stream.add(submit(rest, suffix=f"-r{len(futures)}"))
            if breach and not self.reason:
                self.reason = breach
                logger.warning("stopping the job: %s", breach)
                self._cancel(client, futures)
        self._done.set()
        if self._cancel_requested.is_set() and not self.reason:
            self.reason = "cancelled on request (daskscore cancel)"

    def _cancel(self, client, futures) -> None:
        client.run(cancel_plugin, self.plugin_name, workers=self.workers)
        for f in futures:
            if not f.done():
                f.cancel()

    def _watch_cancel(self, client, futures) -> None:
        """Stop the job when someone asks (``daskscore cancel JOB_ID``)."""
        key = ["daskscore", "cancel", self.job_id]
        while not self._done.wait(_settings.get("cancel-poll-interval")):
            self._publish(client, "Running", force=True)
            try:
                requested = client.get_metadata(key, default=False)
            except Exception:  # noqa: BLE001 - the scheduler is going away
                return
            if requested:
                self._cancel_requested.set()
                self.reason = "cancelled on request (daskscore cancel)"
                logger.warning("stopping the job: %s", self.reason)
                self._cancel(client, futures)
                return

    def _stop(self, client, futures) -> None:
        """End a job that failed: none of its tasks may go on writing its output.

        Left running on a shared cluster, they would commit records (failures,
        with storage down) that the next run of the step would take as done.
        Removing the plugin waits until the mini-batches being scored have ended.
        """
        self._done.set()
        try:
            self._cancel(client, futures)
            client.unregister_worker_plugin(self.plugin_name)
        except Exception as exc:  # noqa: BLE001 - the job is failing already
            logger.warning("could not stop the job on every worker: %s", exc)

    def _failed_pack(self, specs: list[MiniBatchSpec], exc: BaseException) -> list:
        from distributed import KilledWorker

        from ..storage import is_storage_error

        if is_storage_error(exc) and not any(s.kind == "frame" for s in specs):
            # a task's own storage work is recording its mini-batches' outcome
            raise self._storage_failure(
                f"mini-batches {[s.index for s in specs]} cannot be recorded in the "
                "output folder",
                exc,
            ) from exc
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
            error = (
                "the worker scoring this mini-batch died repeatedly "
                f"({exc}); see the worker logs"
            )
            attempt = {
                "try": 1,
                "worker": "",
                "items": n,
                "succeeded": 0,
                "failed": n,
                "elapsed_seconds": 0.0,
                "run_seconds": 0.0,
                "read_seconds": 0.0,
                "status": "WORKER_DIED",
                "error": error,
                "traceback": "",
            }
            records.append(
                {
                    "index": spec.index,
                    "input": spec.describe(),
                    "items": n,
                    "succeeded": 0,
                    "failed": n,
                    "status": "WORKER_DIED",
                    "failed_mini_batch": True,
                    "error": error,
                    "warning": "",
                    "has_output": False,
                    "worker": "",
                    "tries": [attempt],
                }
            )
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
        return threshold_breach(
            self.cfg, p.failed_items, p.failed_mini_batches, p.total_mini_batches
        )

    def _init_watchdog(self, record: dict[str, Any]) -> str | None:
        """Fail the job when init() keeps failing everywhere (not a data problem)."""
        if record.get("status") != "INIT_ERROR":
            self._init_errors = 0
            return None
        self._init_errors = getattr(self, "_init_errors", 0) + 1
        workers = len(self.workers) if self.workers else self._workers_wanted()
        if self._init_errors >= 2 * max(1, workers):
            return (
                f"init() failed on every worker ({self._init_errors} mini-batches "
                f"in a row): {record.get('error', '')}"
            )
        return None

    def _maybe_progress_line(self) -> None:
        p = self._progress
        every = max(1, math.ceil(p.total_mini_batches / _PROGRESS_LINES))
        done = p.done_mini_batches
        if done % every == 0 or done == p.total_mini_batches:
            self.progress_lines.append(p.line())

    # -- live state on the scheduler ----------------------------------------------
    def _reap_stale_jobs(self, client) -> None:
        """Remove jobs whose client died (their runners would stay forever)."""
        try:
            stale = client.run_on_scheduler(stale_jobs)
        except Exception as exc:  # noqa: BLE001 - a scheduler without daskscore
            logger.debug("cannot look for stale jobs: %s", exc)
            return
        for job_id in stale:
            logger.info("removing job %s: its client is gone", job_id)
            try:
                client.unregister_worker_plugin(f"daskscore-{job_id}")
            except Exception as exc:  # noqa: BLE001 - already gone
                logger.debug("%s: %s", job_id, exc)
            client.set_metadata(["daskscore", "jobs", job_id, "status"], "Failed")
            client.set_metadata(
                ["daskscore", "jobs", job_id, "reason"],
                "its client disconnected before the job ended",
            )

    def _install_dashboard(self, client) -> None:
        try:
            if client.run_on_scheduler(install_routes):
                link = dashboard_page_link(getattr(client, "dashboard_link", None))
                if link:
                    logger.info("daskscore job page: %s", link)
        except Exception as exc:  # noqa: BLE001 - a scheduler without daskscore
            logger.debug("no daskscore dashboard route on the scheduler: %s", exc)

    def state(self, status: str, result: StepRunResult | None = None) -> dict:
        p = self._progress
        return {
            "job_id": self.job_id,
            "step": self.step.name,
            "status": status,
            "mini_batches": p.total_mini_batches,
            "done_mini_batches": p.done_mini_batches,
            "failed_mini_batches": p.failed_mini_batches,
            "remaining_mini_batches": p.total_mini_batches - p.done_mini_batches,
            "total_items": p.total_items,
            "succeeded_items": p.succeeded_items,
            "failed_items": p.failed_items,
            "items_per_second": round(p.items_per_second, 3),
            "eta_seconds": None if status != "Running" else p.eta_seconds,
            "started_at": time.time() - p.elapsed_seconds,
            "updated_at": time.time(),
            "output_dir": self.step.output,
            "output_file": result.output_file if result else None,
            "reason": self.reason,
            "client_id": getattr(self, "_client_id", None),
        }

    def _publish(
        self,
        client,
        status: str,
        force: bool = False,
        result: StepRunResult | None = None,
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last_publish < _settings.get("publish-interval"):
            return
        self._last_publish = now
        try:
            client.set_metadata(
                ["daskscore", "jobs", self.job_id], self.state(status, result)
            )
        except Exception as exc:  # noqa: BLE001 - progress display only
            logger.debug("cannot publish job state: %s", exc)

    # -- the end -----------------------------------------------------------------
    def _finish(
        self,
        store: StateStore,
        specs,
        started: float,
        output_file: str | None,
        resumed: int,
    ) -> StepRunResult:
        step, cfg = self.step, self.cfg
        records = [self.records[i] for i in sorted(self.records)]
        succeeded = sum(r["succeeded"] for r in records)
        failed = sum(r["failed"] for r in records)
        failed_mbs = sum(1 for r in records if r.get("failed_mini_batch"))
        tries = sum(len(r.get("tries", [])) for r in records)
        init_errors = [r for r in records if r.get("status") == "INIT_ERROR"]
        if records and len(init_errors) == len(records) and not self.reason:
            self.reason = f"init() failed on every worker: {init_errors[0]['error']}"
        status = "Failed" if self.reason else "Completed"
        not_run = len(specs) - len(records)
        if status == "Completed" and not_run:
            status = "Failed"
            self.reason = f"{not_run} mini-batches were not scored"
        elapsed = time.perf_counter() - started
        lost = sum(
            1
            for r in records
            for t in r.get("tries", [])
            if t.get("status") == "WORKER_DIED" and r.get("status") != "WORKER_DIED"
        )
        warnings = sorted({r["warning"] for r in records if r.get("warning")})
        warnings += store.assembly_warnings
        for w in warnings[:5]:
            logger.warning("%s", w)
        summary = {
            "status": status,
            "step": step.name,
            "job_id": self.job_id,
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
            if elapsed > 0
            else 0.0,
            "resumed_mini_batches": resumed,
            "lost_tries": lost,
            "output_dir": store.output_url,
            "output_file": output_file,
            "output_action": str(cfg.output_action),
            "warnings": warnings[:20],
            "first_errors": [
                f"mini-batch {r['index']} ({r['input']}): {r['status']}: {r['error']}"
                for r in records
                if r.get("failed_mini_batch")
            ][:5],
        }
        self.progress_lines.append(self._progress.line())
        write_reports(
            store.fs, store.path("logs"), summary, records, self.progress_lines
        )
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
            # resolved like output_file: the user's options may only make sense
            # with the URL form they gave (a path-style URL with an account key)
            storage_options=store.storage_options,
        )
        self.progress_cb.finish(self._progress, result)
        logger.info("%s", result_text(summary).strip())
        return result
