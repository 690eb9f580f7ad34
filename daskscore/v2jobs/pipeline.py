"""Run a v2 job file: its jobs in dependency order, recorded in the run history.

:func:`run_job_file` loads, resolves and builds every job first (so a bad binding,
path or MLTable stops everything before anything runs), then runs the jobs whose
dependencies have completed, side by side in threads; a failed job stops the jobs
that depend on it (they stay ``NotStarted``, with the reason). Each job's status
line and the pipeline's result are printed, and the run is one run of the
workspace's run history (``daskscore runs list|show``), in the experiment
``experiment_name``.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import SimpleNamespace
from typing import Any, TextIO

from ..errors import ConfigError, DaskScoreError, DatasetError, UsageError
from ..pipeline.pipeline import Experiment, PipelineRun
from ..progress import TextProgress
from ..registry._common import utc_now
from .bindings import Plan, resolve
from .command import build_command_job
from .parallel import build_parallel_job
from .paths import PathResolver
from .spec import load_job_file, slug

__all__ = ["V2Run", "run_job_file"]

COMPLETED, FAILED, NOT_STARTED, RUNNING = "Completed", "Failed", "NotStarted", "Running"


class V2Run:
    """The outcome of ``daskscore run pipeline.yml``: status, each job's, the run id."""

    def __init__(self, status: str, jobs: dict[str, dict[str, Any]], run_id: str,
                 output_root: str) -> None:
        self.status = status
        self.jobs = jobs
        self.run_id = run_id
        self.output_root = output_root


def _summary(result: Any) -> dict[str, Any]:
    if not hasattr(result, "succeeded_items"):
        return {"reason": result.reason, "command_exit_code": result.returncode,
                "log": result.log, "elapsed_seconds": round(result.elapsed_seconds, 3)}
    return {"reason": result.reason, "output_dir": result.output_dir,
            "output_file": result.output_file, "total_items": result.total_items,
            "succeeded_items": result.succeeded_items,
            "failed_items": result.failed_items, "mini_batches": result.mini_batches,
            "failed_mini_batches": result.failed_mini_batches,
            "resumed_mini_batches": result.resumed_mini_batches,
            "elapsed_seconds": round(result.elapsed_seconds, 3)}


def _line(name: str, result: Any) -> str:
    summary = _summary(result)
    if "succeeded_items" in summary:
        counts = (f"{result.succeeded_items} of {result.total_items} items succeeded, "
                  f"{result.failed_items} failed ({result.mini_batches} mini-batches), "
                  f"{result.elapsed_seconds:.1f} s")
        where = f"; output {result.output_file}" if result.output_file else ""
    else:
        counts = f"exit code {result.returncode}, {result.elapsed_seconds:.1f} s"
        where = f"; log {result.log}"
    if result.status == COMPLETED:
        return f"Job {name}: Completed ({counts}){where}"
    return f"Job {name}: Failed: {result.reason} ({counts}){where}"


class _Executor:
    def __init__(self, plan: Plan, built: dict[str, Any], run: PipelineRun,
                 client: Any, progress: bool, out: TextIO) -> None:
        self.plan, self.built, self.run = plan, built, run
        self.client, self.progress, self.out = client, progress, out
        self.index = {name: i for i, name in enumerate(plan.order)}
        self.status: dict[str, str] = {name: NOT_STARTED for name in plan.order}
        self.details: dict[str, dict[str, Any]] = {n: {} for n in plan.order}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)
        self.run._print(text)

    def one(self, name: str) -> Any:
        progress = TextProgress(interval_s=2.0) if self.progress else None
        return self.built[name].run(client=self.client, progress=progress)

    def finish(self, name: str, future: Future) -> None:
        try:
            result = future.result()
        except DaskScoreError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.status[name] = FAILED
            self.details[name] = {"reason": error, "exit_code": exc.exit_code}
            self.run._update_step(self.index[name], status=FAILED, ended=utc_now(),
                                  reason=error)
            self.say(f"Job {name}: Failed: {error}")
            return
        self.status[name] = result.status
        self.details[name] = _summary(result)
        self.run._update_step(self.index[name], status=result.status, ended=utc_now(),
                              **self.details[name])
        self.say(_line(name, result))

    def blocked(self, name: str) -> str | None:
        bad = [d for d in sorted(self.plan.jobs[name].needs)
               if self.status[d] in (FAILED, "Skipped")]
        return f"not started: job {bad[0]!r} it depends on failed" if bad else None

    def start(self, name: str) -> None:
        self.status[name] = RUNNING
        self.run._update_step(self.index[name], status=RUNNING, started=utc_now())
        self.say(f"Job {name}: started")

    def ready(self) -> list[str]:
        """The jobs that can start now (those a failed job blocks are marked)."""
        out = []
        for name in self.plan.order:
            if self.status[name] != NOT_STARTED:
                continue
            reason = self.blocked(name)
            if reason:
                self.status[name] = "Skipped"
                self.details[name] = {"reason": reason}
                self.run._update_step(self.index[name], status=NOT_STARTED,
                                      reason=reason)
                self.say(f"Job {name}: {reason}")
            elif all(self.status[d] == COMPLETED for d in self.plan.jobs[name].needs):
                out.append(name)
        return out

    def inline(self, name: str) -> None:
        """Run ``name`` in this thread: Ctrl-C and SIGTERM stop it as any run."""
        self.start(name)
        done: Future = Future()
        try:
            done.set_result(self.one(name))
        except DaskScoreError as exc:
            done.set_exception(exc)
        self.finish(name, done)

    def execute(self) -> str:
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(self.plan.order))) as pool:
            while True:
                ready = self.ready()
                if len(ready) == 1 and not running:
                    self.inline(ready[0])
                    continue
                for name in ready:  # side by side
                    self.start(name)
                    running[pool.submit(self.one, name)] = name
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    self.finish(running.pop(future), future)
        failed = [n for n in self.plan.order if self.status[n] != COMPLETED]
        return FAILED if failed else COMPLETED


def _build(plan: Plan, notes: list[str]) -> dict[str, Any]:
    """Every job built (settings checked) before any runs; errors name the job."""
    built = {}
    for name in plan.order:
        job = plan.jobs[name].job
        try:
            if job.type == "command":
                built[name] = build_command_job(plan, name)
            else:
                built[name] = build_parallel_job(plan, name, notes)
        except (ConfigError, DatasetError) as exc:
            where = f"{job.file}: {job.key}" if job.key else job.file
            raise UsageError(f"{where}: {exc}") from None
    return built


def run_job_file(path: str, *, overrides: list[str] | None = None,
                 workspace: str | None = None, output_root: str | None = None,
                 client: Any = None, progress: bool = True,
                 out: TextIO | None = None) -> V2Run:
    """Run the v2 job file ``path`` (pipeline, parallel or command) to its end."""
    out = out or sys.stdout
    file = load_job_file(path, overrides)
    for note in file.notes:
        print(f"daskscore: info: {note}", file=sys.stderr)
    root = output_root or f"azureml-outputs/{slug(file.name)}"
    paths = PathResolver(workspace)
    plan = resolve(file, root, paths)
    notes: list[str] = []
    built = _build(plan, notes)
    for note in notes:
        print(f"daskscore: info: {note}", file=sys.stderr)
    ws = paths.workspace()
    shape = SimpleNamespace(
        steps=[SimpleNamespace(name=n, output=plan.jobs[n].folder) for n in plan.order],
        description=file.data.get("description"))
    tags = {str(k): str(v) for k, v in (file.data.get("tags") or {}).items()}
    run = PipelineRun._new(Experiment(ws, file.experiment_name), shape, tags)
    started = time.perf_counter()
    run._update(started=utc_now())
    executor = _Executor(plan, built, run, client, progress, out)
    executor.say(f"RunId: {run.id}  Experiment: {file.experiment_name}  "
                 f"Workspace: {ws.url}")
    try:
        status = executor.execute()
    except BaseException as exc:  # Ctrl-C, SIGTERM: recorded, then as any run
        error = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
            f"{type(exc).__name__}: {exc}"
        for name, state in executor.status.items():
            if state == RUNNING:
                run._update_step(executor.index[name], status=FAILED, reason=error,
                                 ended=utc_now())
        run._save_log()
        run._update(status=FAILED, ended=utc_now(), error=error)
        raise
    failed = [n for n in plan.order if executor.status[n] != COMPLETED]
    error = (f"job(s) {', '.join(failed)} did not complete" if failed else None)
    seconds = time.perf_counter() - started
    kind = "Pipeline" if file.type == "pipeline" else "Job"
    executor.say(f"{kind} {file.name}: {status} in {seconds:.1f} s"
                 + (f": {error}" if error else "")
                 + f"; outputs under {plan.output_root}")
    run._save_log()
    run._update(status=status, ended=utc_now(), duration_seconds=round(seconds, 3),
                error=error)
    return V2Run(status, executor.details, run.id, plan.output_root)
