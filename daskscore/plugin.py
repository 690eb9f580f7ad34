"""The WorkerPlugin that holds the entry script on every Dask worker.

On ``setup`` (every current worker, and every worker that joins later, such as a
replacement for a dead one) the plugin unpacks the script bundle into worker-local
scratch space and starts a runner process (see ``_runner.py``) that imports the
script and calls ``init()`` once. Tasks find the plugin by name on their worker
and hand it mini-batches. On ``teardown`` (the job ends, or the worker closes)
the runner calls ``shutdown()`` and exits.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from multiprocessing.connection import Connection
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ._runner import INIT_ERROR, READ_ERROR, RUN_EXCEPTION, RUN_TIMEOUT

__all__ = ["RunnerHandle", "ScoringPlugin"]

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHUTDOWN_TIMEOUT_S = 120
_READ_TIMEOUT_MIN_S = 300
_INIT_FAILURES_MAX = 3


def agent_name_for(worker: Any) -> str:
    """A readable, file-name-safe name for one worker process."""
    name = str(getattr(worker, "name", "") or getattr(worker, "address", "worker"))
    name = re.sub(r"^(tcp|tls|inproc|ucx)://", "", name)
    host = socket.gethostname().split(".")[0]
    if not name.startswith("worker"):
        name = f"worker-{name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{host}-{name}")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class RunnerHandle:
    """The worker's side of one runner process."""

    def __init__(
        self,
        setup: dict[str, Any],
        env: dict[str, str],
        workdir: str,
        stdout_path: str,
        stderr_path: str,
    ) -> None:
        parent_sock, child_sock = socket.socketpair()
        with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daskscore._runner",
                    str(child_sock.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=[child_sock.fileno()],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.conn.send(setup)
        self.state = "importing"
        self.init_error: tuple[str, str] | None = None
        self.init_seconds: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and self.state not in ("dead",)

    def _recv(self, timeout: float | None):
        if timeout is not None and not self.conn.poll(timeout):
            return None
        return self.conn.recv()

    def wait_imported(self) -> tuple[str, str] | None:
        """Block until the script is imported; (problem, traceback) on failure."""
        try:
            msg = self._recv(None)
        except (EOFError, OSError):
            self.proc.wait()
            return (
                f"the runner process {_describe_exit(self.proc.returncode)} while "
                "importing the script (see logs/user/<worker>/stderr.txt)",
                "",
            )
        if msg[0] == "import_error":
            self.state = "dead"
            return msg[1], msg[2]
        self.state = "initializing"
        return None

    def wait_ready(self, timeout: float) -> tuple[str, str] | None:
        """Block until ``init()`` has returned; return (error, traceback) on failure."""
        if self.state == "ready":
            return None
        if self.init_error is not None:
            return self.init_error
        try:
            msg = self._recv(timeout)
        except (EOFError, OSError):
            self.proc.wait()
            self.init_error = (
                f"the runner process {_describe_exit(self.proc.returncode)} during "
                "init()",
                "",
            )
            self.state = "dead"
            return self.init_error
        if msg is None:
            self.kill()
            self.init_error = (f"init() did not finish within {timeout:.0f} s", "")
            return self.init_error
        if msg[0] == "init_done":
            self.state = "ready"
            self.init_seconds = msg[1]
            return None
        self.state = "dead"
        self.init_error = (msg[1], msg[2])
        return self.init_error

    def call(self, spec, frame, try_no: int, run_timeout: float) -> dict[str, Any]:
        """One try of one mini-batch in the runner; always returns an outcome."""
        start = time.perf_counter()
        base = {
            "items": spec.items or 1,
            "succeeded": 0,
            "failed": spec.items or 1,
            "read_seconds": 0.0,
            "run_seconds": 0.0,
            "traceback": "",
            "has_output": False,
            "warning": "",
            "read_failed": 0,
        }
        try:
            self.conn.send(("run", spec, frame, try_no))
            msg = self._recv(max(_READ_TIMEOUT_MIN_S, run_timeout))
            if msg is None:
                self.kill()
                return {
                    **base,
                    "status": READ_ERROR,
                    "error": "reading the mini-batch did not finish in time",
                }
            items = msg[1]
            base.update(items=items, failed=items)
            run_start = time.perf_counter()
            msg = self._recv(run_timeout)
            if msg is None:
                self.kill()
                return {
                    **base,
                    "status": RUN_TIMEOUT,
                    "run_seconds": time.perf_counter() - run_start,
                    "error": f"run() did not return within run_invocation_timeout="
                    f"{run_timeout:g} s; its process was stopped and restarted",
                }
            if msg[0] == "returned":  # run() returned; now its output is committed
                msg = self._recv(max(_READ_TIMEOUT_MIN_S, run_timeout))
                if msg is None:
                    self.kill()
                    return {
                        **base,
                        "status": RUN_EXCEPTION,
                        "error": "writing run()'s output did not finish in time",
                    }
            return msg[1]
        except (EOFError, OSError, BrokenPipeError):
            self.state = "dead"
            self.proc.wait()
            return {
                **base,
                "status": RUN_EXCEPTION,
                "run_seconds": time.perf_counter() - start,
                "error": f"the process running run() "
                f"{_describe_exit(self.proc.returncode)}",
            }

    def kill(self) -> None:
        self.state = "dead"
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.conn.close()

    def shutdown(self, timeout: float = _SHUTDOWN_TIMEOUT_S) -> str:
        """Ask the script to run ``shutdown()`` and exit; return its error, if any."""
        if self.state != "ready" or self.proc.poll() is not None:
            self.kill()
            return ""
        error = ""
        try:
            self.conn.send(("shutdown",))
            msg = self._recv(timeout)
            if msg is None:
                error = f"shutdown() did not finish within {timeout:g} s"
            elif msg[0] == "shutdown_done":
                error = msg[1]
            self.proc.wait(10)
        except (EOFError, OSError, subprocess.TimeoutExpired):
            pass
        self.kill()
        return error


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

    def __init__(self, name: str, job: dict[str, Any]) -> None:
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
        with zipfile.ZipFile(io.BytesIO(self.job["bundle"])) as zf:
            zf.extractall(bundle_dir)
        self.bundle_dir = bundle_dir
        job = self.job
        if job["logs_local"]:
            self.user_log_dir = os.path.join(job["log_dir"], "user", self.agent_name)
            self.output_dir = job["script_output_dir"]
        else:
            self.user_log_dir = os.path.join(self.workdir, "logs", self.agent_name)
            self.output_dir = os.path.join(self.workdir, "outputs")
        os.makedirs(self.user_log_dir, exist_ok=True)
        os.makedirs(self.output_dir, exist_ok=True)
        # Only the workers the job uses load the script (node_count and
        # process_count_per_node on an existing cluster); they advertise a
        # resource of the job's name, which its tasks require. Names survive a
        # nanny's restart of a worker, so a replacement worker takes over.
        allowed = job.get("allowed_names")
        self.allowed = allowed is None or str(worker.name) in allowed
        self.import_problem = None
        if not self.allowed:
            return
        # An import problem is kept, not raised: the client asks every worker for
        # it and raises one EntryScriptError (a raise here would only log a
        # traceback on the worker).
        self.import_problem = await asyncio.to_thread(self._start_runner)
        if job.get("resource") and self.import_problem is None:
            await worker.set_resources(**{job["resource"]: 1})

    async def teardown(self, worker) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self.lock:
            if self.runner is not None:
                error = self.runner.shutdown()
                if error:
                    with open(os.path.join(self.user_log_dir, "stderr.txt"), "a") as f:
                        f.write(f"daskscore: {error}\n")
                self.runner = None
        if not self.job["logs_local"]:
            try:
                self._upload_worker_files()
            except Exception as exc:  # noqa: BLE001 - the user's storage boundary
                from .storage import describe_storage_error

                logging.getLogger("daskscore").warning(
                    "could not upload this worker's logs: %s",
                    describe_storage_error(
                        exc, self.job["log_url"], self.job["output_storage_options"]
                    ),
                )
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _upload_worker_files(self) -> None:
        from .storage import url_to_fs

        fs, _ = url_to_fs(self.job["output_url"], self.job["output_storage_options"])
        for local, remote in (
            (self.user_log_dir, f"{self.job['log_url']}/user/{self.agent_name}"),
            (self.output_dir, self.job["script_output_url"]),
        ):
            if os.path.isdir(local) and os.listdir(local):
                fs.put(local.rstrip("/") + "/", remote, recursive=True)

    # -- the runner -------------------------------------------------------------
    def _runner_setup(self) -> dict[str, Any]:
        job = self.job
        context = {
            "output_dir": self.output_dir,
            "log_dir": job["log_dir"] if job["logs_local"] else self.user_log_dir,
            "working_dir": self.workdir,
            "agent_name": self.agent_name,
            "arguments": list(job["arguments"]),
            "inputs": dict(job.get("named_inputs", {})),
        }
        return {
            "bundle_dir": self.bundle_dir,
            "source_display": job.get("source_display", ""),
            "script_name": job["script_name"],
            "arguments": list(job["arguments"]),
            "logging_level": job["logging_level"],
            "agent_name": self.agent_name,
            "entry_script_log": os.path.join(self.user_log_dir, "entry_script.log"),
            "working_dir": self.workdir,
            "sources": job["sources"],
            "model_options": job.get("model_options", {}),
            "parts_url": job["parts_url"],
            "output_format": job["output_format"],
            "output_storage_options": job["output_storage_options"],
            "output_action": job["output_action"],
            "context": context,
        }

    def _start_runner(self) -> tuple[str, str] | None:
        env = dict(os.environ)
        # a worker runs one run() at a time: one BLAS/OpenMP thread, unless the
        # worker's environment or the job says otherwise
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(name, "1")
        env.update(self.job["environment_variables"])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.job.get("runner_env", {}))
        runner = RunnerHandle(
            self._runner_setup(),
            env,
            self.workdir,
            os.path.join(self.user_log_dir, "stdout.txt"),
            os.path.join(self.user_log_dir, "stderr.txt"),
        )
        problem = runner.wait_imported()
        if problem is None:
            self.runner = runner
        else:
            runner.kill()
        return problem

    def ready_runner(self) -> tuple[RunnerHandle | None, tuple[str, str] | None]:
        """The runner with ``init()`` done, (re)starting it when needed.

        After ``_INIT_FAILURES_MAX`` failed ``init()`` calls in a row this worker
        stops restarting the script: every later try fails at once with the same
        error (the job's thresholds, or its init watchdog, end the job).
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
        error = self.runner.wait_ready(self.job["init_timeout"])
        if error is not None:
            self.runner.kill()
            self.init_failures += 1
            if self.init_failures >= _INIT_FAILURES_MAX:
                self.init_broken = (
                    f"{error[0]} (failed {self.init_failures} times in a row on "
                    f"this worker; not retried any more)",
                    error[1],
                )
            return None, error
        self.init_failures = 0
        return self.runner, None

    def try_mini_batch(self, spec, frame, try_no: int) -> dict[str, Any]:
        """One try: start the runner if needed, run, and return the outcome."""
        runner, error = self.ready_runner()
        if runner is None:
            n = spec.items or 1
            return {
                "items": n,
                "succeeded": 0,
                "failed": n,
                "read_seconds": 0.0,
                "run_seconds": 0.0,
                "status": INIT_ERROR,
                "error": error[0],
                "traceback": error[1],
                "has_output": False,
                "warning": "",
                "read_failed": 0,
            }
        return runner.call(spec, frame, try_no, self.job["run_invocation_timeout"])

    def prefetch(self, spec) -> None:
        """Hint the runner to fetch ``spec``'s inputs while it scores another."""
        runner = self.runner
        if runner is None or runner.state != "ready" or not self.job.get("prefetch"):
            return
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
