"""One run of a step, client side: plan, resume, place, score, collect, report.

:class:`Job` is the loop over its collaborators, each testable on its own:
:mod:`.resume` (what an earlier run left), :mod:`.placement` (which workers,
packs), :class:`.scoring.ScoringLoop` (tasks and records, live thresholds from
:mod:`.thresholds`), :mod:`.live` (state on the scheduler), and :mod:`.summary`
(status, reports, result). ``Job.run()`` is what ``ParallelRunStep.run()`` and a
detached job's orchestrator (:mod:`.detached`) call.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from .. import _settings
from .._protocol import LOGS_DIR, JobSpec, JobStatus, MiniBatchSpec, plugin_name
from ..config import OutputAction, ParallelRunConfig
from ..entry_script import bundle_entry_script
from ..errors import DaskScoreError, EntryScriptError, JobError
from ..output.assemble import assemble_output
from ..output.lock import LockSettings, OutputLock
from ..output.reports import result_text
from ..output.store import StateStore, read_record
from ..progress import JobProgress, ProgressCallback
from ..result import StepRunResult
from ..storage import describe_storage_error, is_storage_error
from ..worker.control import plugin_problem
from ..worker.plugin import ScoringPlugin
from .cluster import (
    describe_exit,
    embedded_cluster,
    keep_embedded_cluster,
    release_embedded_cluster,
    shorten_message_log,
    worker_exits,
)
from .jobspec import build_job_spec
from .live import JobBoard, install_dashboard, reap_stale_jobs
from .placement import choose_workers, workers_wanted
from .records import RecordBook
from .resume import load_state
from .scoring import ScoringLoop
from .summary import finish, write_early_failure
from .thresholds import Tally

__all__ = ["Job"]

logger = logging.getLogger("daskscore")


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
        wait_for_lock: bool = False,
    ) -> None:
        self.step = step
        self.cfg: ParallelRunConfig = step.config
        self.client = client
        self.progress_cb = progress
        self.rerun_failed = rerun_failed
        self.wait_for_lock = wait_for_lock
        self.lock: OutputLock | None = None
        self.job_id = job_id or f"{step.name}-{uuid.uuid4().hex[:8]}"
        self.plugin_name = plugin_name(self.job_id)
        self.resource = plugin_name(self.job_id)
        self.allowed_names: list[str] | None = None
        self.allowed_nodes: dict[str, int | None] | None = None
        self.workers: list[str] | None = None
        self.bundle = bundle
        self.cluster = None
        self.own_client = None
        self.records = RecordBook(0)  # replaced by what resume keeps
        self.progress_lines: list[str] = []
        self.reason = ""
        self.sys_log_dir: str | None = None
        # read once, so that a bad setting fails the job before it starts
        self.worker_wait = _settings.get("worker-wait")
        self.cancel_poll = _settings.get("cancel-poll-interval")
        self.no_progress_timeout = _settings.get("no-progress-timeout")
        self.store: StateStore | None = None
        self.pack_sizes = (
            _settings.get("pack.max-mini-batches"),
            _settings.get("pack.divisor"),
        )
        self.lock_settings = LockSettings(
            stale_after=_settings.get("lock.stale-after"),
            heartbeat_interval=_settings.get("lock.heartbeat-interval"),
            poll_interval=_settings.get("lock.poll-interval"),
        )
        self.board = JobBoard(
            self.job_id, step.name, step.output, _settings.get("publish-interval")
        )
        self.board.describe(step, _settings.get("dashboard-forget-after"))

    # -- cluster -----------------------------------------------------------------
    def _connect(self) -> Any:
        if self.client is not None:
            self.workers, self.allowed_names, self.allowed_nodes = choose_workers(
                self.client, self.cfg, self.worker_wait
            )
            return self.client
        n = workers_wanted(self.cfg)
        self.cluster, self.own_client, reused = embedded_cluster(n, self.sys_log_dir)
        logger.info(
            "%s an embedded cluster with %d worker processes",
            "reusing" if reused else "started",
            n,
        )
        return self.own_client

    def _close_cluster(self, keep: bool = False) -> None:
        """Close the embedded cluster, or keep it for the next job (``keep``)."""
        if self.cluster is not None:
            release_embedded_cluster(
                self.cluster,
                self.own_client,
                workers_wanted(self.cfg),
                keep and keep_embedded_cluster(),
            )
        self.cluster = self.own_client = None

    # -- main --------------------------------------------------------------------
    def run(self) -> StepRunResult:
        started = time.perf_counter()
        bundle, store, specs, plan_seconds = self._prepare()
        try:
            return self._run_locked(started, bundle, store, specs, plan_seconds)
        finally:
            self._release_lock()

    def _run_locked(self, started, bundle, store, specs, plan_seconds):
        """Score and collect, holding the output folder's lock."""
        resumed = len(self.records)
        self.progress = JobProgress(
            total_mini_batches=len(specs),
            total_items=_known_total(specs),
            started=started,
        )
        workers = len(self.workers) if self.workers else workers_wanted(self.cfg)
        self.tally = Tally(self.cfg, self.progress, workers)
        self.tally.resume(self.records.values())
        try:
            client = self._connect()
            if self.workers:
                self.tally.workers = len(self.workers)
            self._score(client, store, bundle, specs, plan_seconds, resumed)
        except BaseException:
            self._close_cluster()
            raise
        try:
            result = self._collect(store, specs, started, resumed)
            self.board.publish(
                client,
                self.progress,
                result.status,
                self.reason,
                result.output_file,
                force=True,
            )
        except BaseException:
            self._close_cluster()
            raise
        self._close_cluster(keep=result.status == JobStatus.COMPLETED)
        return result

    def _prepare(self) -> tuple[Any, StateStore, list[MiniBatchSpec], float]:
        """The script bundle, the output store (resumed), the plan."""
        step, cfg = self.step, self.cfg
        try:
            bundle = self.bundle or bundle_entry_script(
                cfg.entry_script, cfg.source_directory
            )
        except EntryScriptError as exc:
            store = StateStore(step.output, step.storage_options)
            write_early_failure(store, step.name, str(exc), exc.details)
            raise
        t_plan = time.perf_counter()
        before = time.time() - 0.05  # less the coarse file clock's lag
        specs, plan_print = step.plan()
        # a local file changed after its folder's listing began: not what was planned
        seen_at = specs.listed_at() or before
        plan_seconds = time.perf_counter() - t_plan
        try:
            store = StateStore(step.output, step.storage_options)
            self._take_lock(store)
            state = load_state(
                store,
                step._fingerprint(bundle.digest, plan_print),
                len(specs),
                rerun_failed=self.rerun_failed,
                step_name=step.name,
                settings=step.settings(),
                changed_since=step.inputs_changed_since,
                seen_at=seen_at,
            )
            self.records, self.interrupted = state.records, state.interrupted
        except (DaskScoreError, KeyboardInterrupt):
            self._release_lock()
            raise
        except Exception as exc:  # the output location is the user's storage
            self._release_lock()
            raise JobError(
                "cannot use the output folder "
                + describe_storage_error(exc, step.output, step.storage_options)
            ) from exc
        if store.local:
            self.sys_log_dir = store.path(LOGS_DIR, "sys")
        self.store = store
        return bundle, store, specs, plan_seconds

    def _take_lock(self, store: StateStore) -> None:
        """Hold the output folder (one job at a time); clear earlier temp files."""
        self.lock = OutputLock(store, self.job_id, self.step.name, self.lock_settings)
        self.lock.acquire(wait=self.wait_for_lock)
        removed = store.remove_temp_files()
        if removed:
            logger.info(
                "removed %d temporary file(s) an earlier attempt left in %s",
                len(removed),
                store.output_url,
            )

    def _release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _score(self, client, store, bundle, specs, plan_seconds, resumed) -> None:
        """Register the job's plugin, score what is left, remove the plugin."""
        cfg = self.cfg
        self.board.client_id = getattr(client, "id", None)
        reap_stale_jobs(client)
        install_dashboard(client)
        script_display = os.path.join(cfg.source_directory or "", cfg.entry_script)
        job = self._job_spec(store, bundle, script_display)
        self._register(client, job, script_display, store)
        todo = _Todo(specs, self.records)
        self.progress_lines.append(
            f"Scheduled {len(specs)} mini-batches in {plan_seconds:.2f} s"
            + (f" ({resumed} already committed, resuming)" if resumed else "")
        )
        self.progress_cb.start(self.progress, getattr(client, "dashboard_link", None))
        self.board.publish(client, self.progress, JobStatus.RUNNING, force=True)
        self.reason = self.tally.breach() or ""
        if not self.reason:
            loop = ScoringLoop(
                client,
                self,
                self.records,
                self.tally,
                self.progress,
                self.progress_cb,
                self.board,
                self.progress_lines,
            )
            try:
                self.reason = loop.run(todo, self.step.inputs)
            finally:
                loop.done.set()
            # a cancel the watcher saw just as the last mini-batch finished
            self.reason = self.reason or loop.reason
        try:
            client.unregister_worker_plugin(self.plugin_name)
        except Exception as exc:  # noqa: BLE001 - a worker left mid-way
            logger.warning("could not remove the job from every worker: %s", exc)

    def _collect(self, store, specs, started, resumed) -> StepRunResult:
        """Assemble the collected file and write the reports."""
        cfg = self.cfg
        output_file = None
        try:
            _read_late_records(
                store, self.records, (self.tally, self.board.stats), len(specs)
            )
            if cfg.output_action == OutputAction.APPEND_ROW:
                records = self.records
                output_file, _ = assemble_output(
                    store, records.with_output(), cfg.output_format,
                    cfg.output_file_name, strict=True, locate=records.part_of,
                )
            self.progress_lines.append(self.progress.line())
            summary, result = finish(
                store,
                cfg,
                self.records.in_order(),
                n_specs=len(specs),
                reason=self.reason,
                elapsed=time.perf_counter() - started,
                resumed=resumed,
                output_file=output_file,
                step_name=self.step.name,
                job_id=self.job_id,
                progress_lines=self.progress_lines,
            )
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            raise self.storage_failure(
                "cannot write the collected output and the logs to", exc
            ) from exc
        self.reason = summary["reason"]
        self.progress_cb.finish(self.progress, result)
        logger.info("%s", result_text(summary).strip())
        return result

    def stall_details(self, indices: list[int]) -> tuple[list[int], list[str], str]:
        """For the root cause of a job that cannot go on (see ``.liveness``)."""
        return _stall_details(self.store, self.cluster, self.sys_log_dir, indices)

    def storage_failure(self, what: str, exc: BaseException) -> JobError:
        """One line for an output folder that failed mid-job, and what to do."""
        where = describe_storage_error(exc, self.step.output, self.step.storage_options)
        return JobError(
            f"{what} {where}; the mini-batches committed so far are kept: run the "
            "same step again to resume"
        )

    def _job_spec(self, store: StateStore, bundle, script_display: str) -> JobSpec:
        keep = self.cluster is not None and keep_embedded_cluster()
        return build_job_spec(self.step, store, bundle, script_display,
                              self.allowed_names, self.resource,
                              allowed_nodes=self.allowed_nodes, job_id=self.job_id,
                              keep_runners=keep, interrupted=self.interrupted)

    def _register(
        self, client, job: JobSpec, script_display: str, store: StateStore
    ) -> None:
        if store.local:
            os.makedirs(store.path(LOGS_DIR), exist_ok=True)
        shorten_message_log(getattr(client, "scheduler_comm", None))
        client.register_plugin(
            ScoringPlugin(self.plugin_name, job), name=self.plugin_name
        )
        problems = client.run(plugin_problem, self.plugin_name, workers=self.workers)
        for _worker, problem in sorted(problems.items()):
            if problem:
                client.unregister_worker_plugin(self.plugin_name)
                error = EntryScriptError(script_display, problem[0], problem[1])
                write_early_failure(store, self.step.name, str(error), problem[1])
                raise error


class _Todo:
    """The mini-batches of a plan not recorded yet, in id order, made one at a
    time as they are submitted; ``len()`` without making any."""

    def __init__(self, specs: Any, records: RecordBook) -> None:
        self.specs, self.records = specs, records
        self.left = len(specs) - sum(1 for i in records if i < len(specs))

    def __len__(self) -> int:
        return self.left

    def __iter__(self):
        specs, records = self.specs, self.records
        # a spec's index is its place in the plan: skip without making it
        return (specs[i] for i in range(len(specs)) if i not in records)

    def count_left(self) -> int:
        """How many are still not recorded."""
        records = self.records
        return sum(1 for i in range(len(self.specs)) if i not in records)

    def frames(self) -> list[MiniBatchSpec]:
        """The dask DataFrame partitions left (held in the plan's lists)."""
        eager = getattr(self.specs, "eager_specs", None)
        source = eager() if eager is not None else self.specs
        return [s for s in source if s.kind == "frame" and s.index not in self.records]


def _known_total(specs: Any) -> int | None:
    known = getattr(specs, "known_items", None)
    if known is not None:
        return known()
    if any(s.items is None for s in specs):
        return None
    return sum(s.items or 0 for s in specs)


def _read_late_records(
    store: StateStore, records: Any, counters: tuple[Any, ...], n: int
) -> None:
    """Read the records committed by mini-batches still running when the job was
    cancelled, and those counted from their live summary only (counted once by
    each of ``counters``: a summary was counted already)."""
    for index, record in store.iter_records(known=records.final()):
        if index < n:
            if not records.is_live(index):
                for counter in counters:
                    counter.count(record)
            records[index] = record
    # a listing may miss a record just written (a cached blob listing): read
    # the few still known by their summary only by name (a local disk's pack
    # logs were all read above)
    for index in [] if store.local else list(records.live_ids()):
        record = read_record(store.fs, store.records, index)
        if record is not None:
            records[index] = record


def _stall_details(
    store: StateStore | None, cluster: Any, sys_log_dir: str | None, indices: list[int]
) -> tuple[list[int], list[str], str]:
    """For the root cause of a job that cannot go on (see ``.liveness``).

    Of ``indices`` (the mini-batches of the tasks dead workers were running),
    those being scored (started, not recorded); how the embedded cluster's
    workers died; where their logs are.
    """
    scoring = sorted(set(indices))
    if store is not None and scoring:
        try:
            started = store.started(scoring)
        except Exception:  # noqa: BLE001 - only a detail of the message
            started = []
        scoring = started or scoring[:1]
    causes: list[str] = []
    for codes in worker_exits(cluster).values():
        for code in codes[-1:]:
            if describe_exit(code) not in causes:
                causes.append(describe_exit(code))
    if cluster is not None and sys_log_dir:
        logs = sys_log_dir.rstrip("/") + "/"
    else:
        logs = "the workers' logs"
    return scoring, causes, logs
