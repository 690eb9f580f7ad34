"""The WorkerPlugin that holds the entry script on every Dask worker.

On ``setup`` (every current worker, and every worker that joins later, such as a
replacement for a dead one, which takes over on the dead one's node) the plugin
unpacks the script bundle into worker-local scratch space and starts a runner
process (:mod:`daskscore.runner`, through :class:`~.handle.RunnerHandle`) that
imports the script and calls ``init()`` once. Tasks find the plugin by name on
their worker and hand it mini-batches. On ``teardown`` (the job ends, or the
worker closes) the runner calls ``shutdown()`` and exits; or, when the job says
``keep_runners`` (an embedded cluster kept for the client's next job), the
worker keeps it, ``init()`` done, for the next job of the same script (same
bundle, arguments, environment, inputs' options): that job's plugin takes it
over (``RunnerHandle.rebind``), and a job of another script has it shut down.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import zipfile
from typing import Any

from distributed.comm import get_address_host
from distributed.diagnostics.plugin import WorkerPlugin

from .. import _settings
from .._protocol import (
    JobSpec,
    RunnerSetup,
    TryOutcome,
    TryStatus,
    node_of,
    set_single_threaded,
)
from ..io.files import plain_local
from ..storage import RESOLVED_SECRET_ENV, describe_storage_error, url_to_fs
from .activity import WorkerActivity
from .handle import RunnerHandle

__all__ = ["ScoringPlugin", "agent_name_for", "keep_cwd_outputs"]

# the runner kept by this worker process for a next job of the same script:
# key -> (runner, its working folder, its bundle folder, shutdown timeout)
_KEPT: dict[str, tuple[RunnerHandle, str, str, float | None]] = {}
_KEPT_LOCK = threading.Lock()


def _runner_key(job: JobSpec) -> str:
    """What a kept runner must share with a job to serve it (its script, what
    ``init()`` may have read, how it reads inputs)."""
    with zipfile.ZipFile(io.BytesIO(job.bundle)) as zf:  # its files, not their times
        files = sorted((i.filename, i.CRC, i.file_size) for i in zf.infolist())
    digest = hashlib.sha256()
    same = [
        files,
        job.script_name,
        job.arguments,
        job.environment_variables,
        job.runner_env,
        job.logging_level,
        job.model_options,
        job.sources,
        job.output_storage_options,
        job.runner_memory_limit,
        job.return_result,
        # what init() may have read: EntryScript().output_dir and the logs
        # (AZUREML_BI_OUTPUT_PATH is set when the runner process starts)
        job.script_output_dir,
        job.log_dir,
    ]
    digest.update(json.dumps(same, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _stop_kept(kept: tuple[RunnerHandle, str, str, float | None]) -> None:
    runner, workdir, _bundle, timeout = kept
    runner.shutdown(timeout)
    shutil.rmtree(workdir, ignore_errors=True)


@atexit.register
def _stop_all_kept() -> None:
    """The worker process ends: its kept runner runs ``shutdown()`` and exits."""
    with _KEPT_LOCK:
        kept = list(_KEPT.values())
        _KEPT.clear()
    for entry in kept:
        _stop_kept(entry)

# the folder daskscore is imported from, so that the runner imports the same copy
_PACKAGE_PARENT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


def agent_name_for(worker: Any) -> str:
    """A readable, file-name-safe name for one worker process."""
    name = str(getattr(worker, "name", "") or getattr(worker, "address", "worker"))
    name = re.sub(r"^(tcp|tls|inproc|ucx)://", "", name)
    host = socket.gethostname().split(".")[0]
    if not name.startswith("worker"):
        name = f"worker-{name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{host}-{name}")


def keep_cwd_outputs(workdir: str, user_log_dir: str) -> None:
    """What the script wrote to ``./outputs`` (its working folder, ``workdir``, is
    this worker's own) goes to ``logs/user/<agent>/outputs/``: no two processes
    share one."""
    cwd_outputs = os.path.join(workdir, "outputs")
    if os.path.isdir(cwd_outputs) and os.listdir(cwd_outputs):
        target = os.path.join(user_log_dir, "outputs")
        shutil.copytree(cwd_outputs, target, dirs_exist_ok=True)


def _save_worker_logs(plugin: ScoringPlugin) -> None:
    """Keep what the script wrote to ``./outputs`` in the worker's logs, and
    upload the logs when the output is on blob storage (a ``ds.map_partitions``
    scorer has no output folder: no ``log_url``)."""
    job = plugin.job
    if not job.log_url:
        return
    try:
        keep_cwd_outputs(plugin.workdir, plugin.user_log_dir)
    except OSError as exc:  # a full disk: the logs still go up
        logging.getLogger("daskscore").warning(
            "could not keep what the script wrote to ./outputs: %s", exc)
    if job.logs_local:
        return
    try:
        plugin._upload_worker_files()
    except Exception as exc:  # noqa: BLE001 - the user's storage boundary
        logging.getLogger("daskscore").warning(
            "could not upload this worker's logs: %s",
            describe_storage_error(exc, job.log_url, job.output_storage_options),
        )


class ScoringPlugin(WorkerPlugin):
    """Holds one job's entry script on a worker; tasks reach it by ``name``.

    Parameters
    ----------
    name
        Unique per job, so two jobs on one cluster never share state.
    job
        What the runner needs: the script bundle, the arguments, environment
        variables, output locations and formats (see ``ParallelRunStep``).
    """

    def __init__(self, name: str, job: JobSpec) -> None:
        self.name = name
        self.job = job

    # -- lifecycle --------------------------------------------------------------
    async def setup(self, worker) -> None:
        self.worker = worker
        self.lock = threading.Lock()
        self.cancelled = False
        self.runner: RunnerHandle | None = None
        self.restarts = 0
        self.init_failures = 0
        self.init_broken: tuple[str, str] | None = None
        self.agent_name = agent_name_for(worker)
        base = getattr(worker, "local_directory", None) or tempfile.gettempdir()
        self.workdir = tempfile.mkdtemp(prefix=f"{self.name}-", dir=base)
        bundle_dir = os.path.join(self.workdir, "src")
        with zipfile.ZipFile(io.BytesIO(self.job.bundle)) as zf:
            zf.extractall(bundle_dir)
        self.bundle_dir = bundle_dir
        job = self.job
        if job.logs_local:
            self.user_log_dir = os.path.join(job.log_dir, "user", self.agent_name)
            self.output_dir = job.script_output_dir
        else:
            self.user_log_dir = os.path.join(self.workdir, "logs", self.agent_name)
            # not "outputs": that is the script's own ./outputs (see _close)
            self.output_dir = os.path.join(self.workdir, "script-outputs")
        os.makedirs(self.user_log_dir, exist_ok=True)
        os.makedirs(self.output_dir, exist_ok=True)
        # Only the workers the job uses load the script (node_count and
        # process_count_per_node on an existing cluster); they advertise a
        # resource of the job's name, which its tasks require.
        self.allowed = await self._takes_part(worker)
        self.import_problem = None
        if not self.allowed:
            return
        self.activity = WorkerActivity.attach(self, worker)
        # An import problem is kept, not raised: the client asks every worker for
        # it and raises one EntryScriptError (a raise here would only log a
        # traceback on the worker).
        self.import_problem = await asyncio.to_thread(self._start_runner)
        if job.resource and self.import_problem is None:
            await worker.set_resources(**{job.resource: 1})

    async def _takes_part(self, worker) -> bool:
        """Whether this worker is one of the job's (it then loads the script).

        A worker the job chose, by name; or one that joined a chosen node later
        (a nanny restarted a dead worker: a worker without a name of its own is
        named by its address, which changes), while the node has a free place.
        """
        job = self.job
        if job.allowed_names is None or str(worker.name) in job.allowed_names:
            return True
        info = {"name": worker.name, "host": get_address_host(worker.address)}
        node = node_of(worker.address, info)
        limits = job.allowed_nodes or {}
        if node not in limits:
            return False
        if limits[node] is None:
            return True
        try:
            table = await worker.scheduler.identity(n_workers=-1)
        except Exception:  # noqa: BLE001 - the scheduler is going away
            return False
        # the places taken: workers of the node the job chose (alive: in the
        # scheduler's table), or that took one (they hold the job's resource)
        taken = [
            address
            for address, w in (table.get("workers") or {}).items()
            if address != worker.address
            and node_of(address, w) == node
            and (
                str(w.get("name", address)) in job.allowed_names
                or (w.get("resources") or {}).get(job.resource, 0) >= 1
            )
        ]
        return len(taken) < limits[node]

    async def teardown(self, worker) -> None:
        WorkerActivity.detach(self, worker)
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        kept = False
        with self.lock:
            if self.runner is not None and _keep_runner(self):
                kept, self.runner = True, None
            if self.runner is not None:
                error = self.runner.shutdown(self.job.runner_shutdown_timeout)
                if error:
                    with open(os.path.join(self.user_log_dir, "stderr.txt"), "a") as f:
                        f.write(f"daskscore: {error}\n")
                self.runner = None
        _save_worker_logs(self)
        if not kept:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _upload_worker_files(self) -> None:
        fs, _ = url_to_fs(self.job.output_url, self.job.output_storage_options)
        for local, remote in (
            (self.user_log_dir, f"{self.job.log_url}/user/{self.agent_name}"),
            (self.output_dir, self.job.script_output_url),
        ):
            if os.path.isdir(local) and os.listdir(local):
                fs.put(local.rstrip("/") + "/", remote, recursive=True)

    # -- the runner -------------------------------------------------------------
    def _runner_setup(self) -> RunnerSetup:
        job = self.job
        context = {
            "output_dir": self.output_dir,
            "log_dir": job.log_dir if job.logs_local else self.user_log_dir,
            "working_dir": self.workdir,
            "agent_name": self.agent_name,
            "arguments": list(job.arguments),
            "inputs": dict(job.named_inputs),
            "run": dict(job.run_context),
        }
        return RunnerSetup(
            bundle_dir=self.bundle_dir,
            source_display=job.source_display,
            script_name=job.script_name,
            arguments=list(job.arguments),
            logging_level=job.logging_level,
            agent_name=self.agent_name,
            entry_script_log=os.path.join(self.user_log_dir, "entry_script.log"),
            working_dir=self.workdir,
            sources=job.sources,
            model_options=job.model_options,
            parts_url=job.parts_url,
            output_format=job.output_format,
            output_storage_options=job.output_storage_options,
            output_action=job.output_action,
            context=context,
            memory_limit=job.runner_memory_limit,
            return_result=job.return_result,
        )

    def _secrets(self) -> dict[str, Any]:
        """Where the job's credentials are: masked in what the runner prints."""
        job = self.job
        return {
            "sources": job.sources,
            "output": job.output_storage_options,
            "models": job.model_options,
            "environment_variables": job.environment_variables,
            "workspace": job.run_context.get("workspace_options") or {},
        }

    def _start_runner(self) -> tuple[str, str] | None:
        if self.runner is None and _take_kept_runner(self):
            return None
        # The storage credentials of the worker's environment are in the job's
        # storage options already (resolved on the client): keep them out of the
        # environment a script may print, log or hand to its own children.
        env = {k: v for k, v in os.environ.items() if k not in RESOLVED_SECRET_ENV}
        # a worker runs one run() at a time: one BLAS/OpenMP thread, unless the
        # worker's environment or the job says otherwise
        set_single_threaded(env)
        env.update(self.job.environment_variables)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.job.runner_env)
        # what Azure ML v1 scripts read: EntryScript().output_dir
        env["AZUREML_BI_OUTPUT_PATH"] = self.output_dir
        runner = RunnerHandle(
            self._runner_setup(),
            env,
            self.workdir,
            os.path.join(self.user_log_dir, "stdout.txt"),
            os.path.join(self.user_log_dir, "stderr.txt"),
            self._secrets(),
        )
        problem = runner.wait_imported()
        if problem is None:
            self.runner = runner
        else:
            runner.kill()
        return problem

    def ready_runner(self) -> tuple[RunnerHandle | None, tuple[str, str] | None]:
        """The runner with ``init()`` done, (re)starting it when needed.

        After the job's ``runner_init_failures`` (the client's setting
        ``daskscore.runner.init-failures``, 3) failed ``init()`` calls in a row this
        worker stops restarting the script: every later try fails at once with the
        same error (the job's thresholds, or its init watchdog, end the job).
        """
        if self.init_broken is not None:
            return None, self.init_broken
        if self.runner is None or not self.runner.alive:
            if self.runner is not None:
                self.runner.kill()
                self.restarts += 1
            self.runner = None
            problem = self._start_runner()
            if problem is not None:
                return None, (
                    f"the entry script could not be imported: {problem[0]}",
                    problem[1],
                )
        error = self.runner.wait_ready(self.job.init_timeout)
        if error is not None:
            self.runner.kill()
            self.init_failures += 1
            limit = self.job.runner_init_failures or _settings.get(
                "runner.init-failures"
            )
            if self.init_failures >= limit:
                self.init_broken = (
                    f"{error[0]} (failed {self.init_failures} times in a row on "
                    f"this worker; not retried any more)",
                    error[1],
                )
            return None, error
        self.init_failures = 0
        return self.runner, None

    def try_mini_batch(self, spec, frame, try_no: int) -> TryOutcome:
        """One try: start the runner if needed, run, and return the outcome."""
        activity = getattr(self, "activity", None) or WorkerActivity("")
        activity.trying(spec.index, try_no)
        try:
            return self._try(spec, frame, try_no)
        finally:
            activity.tried()

    def _try(self, spec, frame, try_no: int) -> TryOutcome:
        runner, error = self.ready_runner()
        if runner is None:
            n = spec.items or 1
            return TryOutcome(
                items=n,
                failed=n,
                status=TryStatus.INIT_ERROR,
                error=error[0],
                traceback=error[1],
            )
        return runner.call(
            spec,
            frame,
            try_no,
            self.job.run_invocation_timeout,
            self.job.runner_read_timeout,
        )

    def initializing_for(self) -> float | None:
        """Seconds this worker's ``init()`` has been running; None when it is not."""
        runner = getattr(self, "runner", None)
        return runner.initializing_for() if runner is not None else None

    def prefetch(self, spec) -> None:
        """Hint the runner to fetch ``spec``'s inputs while it scores another."""
        runner = self.runner
        if runner is None or runner.state != "ready" or not self.job.prefetch:
            return
        if _local_inputs(self.job, spec):
            return  # nothing to fetch ahead: spare the runner a message
        try:
            runner.conn.send(("prefetch", spec))
        except OSError:
            pass

    def prefetch_queued(self) -> None:
        """Hint the runner to fetch the first mini-batch of this job's next pack.

        Called while the last mini-batch of a pack is scored. Dask has usually
        sent this worker its next task already (it waits in the worker's ready
        queue); its first mini-batch is fetched ahead as within a pack. Best
        effort: the queue is Dask's internal state, and a task stolen by another
        worker only wastes one read.
        """
        try:
            state = self.worker.state
            queued = sorted(
                [*state.ready, *state.constrained], key=lambda ts: ts.priority
            )
            for ts in queued:
                args = getattr(ts.run_spec, "args", ())
                if len(args) >= 2 and args[0] == self.name and args[1]:
                    self.prefetch(args[1][0])
                    return
        except Exception:  # noqa: BLE001 - Dask's internals changed: no prefetch
            return


def _keep_runner(self: ScoringPlugin) -> bool:
    """Keep the runner for the next job of the same script (job.keep_runners)."""
    runner = self.runner
    job = self.job
    if not (job.keep_runners and job.logs_local and runner.alive):
        return False
    if runner.state != "ready":
        return False
    with _KEPT_LOCK:
        earlier = list(_KEPT.values())
        _KEPT.clear()
        _KEPT[_runner_key(self.job)] = (
            runner,
            self.workdir,
            self.bundle_dir,
            self.job.runner_shutdown_timeout,
        )
    for entry in earlier:  # one kept runner per worker
        _stop_kept(entry)
    return True

def _take_kept_runner(self: ScoringPlugin) -> bool:
    """Take over the runner an earlier job of this script left (``init()``
    done): this job's folders, logs and context. Another script's is stopped."""
    if not (self.job.keep_runners and self.job.logs_local):
        return False
    with _KEPT_LOCK:
        kept = _KEPT.pop(_runner_key(self.job), None)
        others = list(_KEPT.values())
        _KEPT.clear()
    for entry in others:  # the script changed: new runners
        _stop_kept(entry)
    if kept is None:
        return False
    runner, workdir, bundle_dir, _timeout = kept
    fresh = (self.workdir, self.bundle_dir)
    self.workdir, self.bundle_dir = workdir, bundle_dir
    if not runner.rebind(
        self._runner_setup(),
        os.path.join(self.user_log_dir, "stdout.txt"),
        os.path.join(self.user_log_dir, "stderr.txt"),
        self.job.init_timeout,
    ):
        shutil.rmtree(workdir, ignore_errors=True)
        self.workdir, self.bundle_dir = fresh
        return False
    shutil.rmtree(fresh[0], ignore_errors=True)
    # what the last job's script wrote to ./outputs went to its logs already
    shutil.rmtree(os.path.join(workdir, "outputs"), ignore_errors=True)
    self.runner = runner
    return True


def _local_inputs(job: JobSpec, spec) -> bool:
    """Whether all of ``spec``'s inputs are plain local paths."""
    sources = job.sources
    if not spec.paths or spec.source >= len(sources or ()):
        return False
    options = sources[spec.source].get("storage_options") or {}
    return all(plain_local(p, options) for p in spec.paths)
