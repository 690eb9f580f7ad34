"""One runner process, seen from its Dask worker: start, calls, timeouts, kill.

The runner is ``python -m daskscore.runner`` on an inherited socket; the worker
sends it the setup, then one ``("run", ...)`` per try and waits for the answer
within the job's timeouts (a hung ``run()`` gets the process killed, and the
plugin starts a new one that runs ``init()`` again; so does a try whose
exception left the runner unusable, such as a ``MemoryError``).

Each runner leads its own process session (and group): killing it kills the
group, so what ``run()`` started (a child that never exits) goes with it, after a
timeout and when the job ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from .. import _settings
from .._protocol import RunnerSetup, TryOutcome, TryStatus
from ..runner.phase import IDLE, READING, RUNNING, WRITING, PhaseBoard
from ..runner.transfer import discard, pack, sweep_stale, unpack
from .capture import Capture

__all__ = ["RunnerHandle"]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _failure(
    items: int, status: TryStatus, error: str, run_seconds: float = 0.0
) -> TryOutcome:
    """A try the runner could not answer for: every item failed."""
    return TryOutcome(
        items=items, failed=items, status=status, error=error, run_seconds=run_seconds
    )


def _timed_out(phase: int, since: float, items: int, run_timeout: float):
    """The failure of a try whose ``phase`` took too long (its runner killed)."""
    if phase == RUNNING:
        return _failure(
            items,
            TryStatus.RUN_TIMEOUT,
            f"run() did not return within run_invocation_timeout="
            f"{run_timeout:g} s; its process was stopped and restarted",
            run_seconds=time.monotonic() - since,
        )
    if phase == WRITING:
        return _failure(
            items,
            TryStatus.RUN_EXCEPTION,
            "writing run()'s output did not finish in time",
        )
    return _failure(
        items, TryStatus.READ_ERROR, "reading the mini-batch did not finish in time"
    )


class RunnerHandle:
    """The worker's side of one runner process."""

    def __init__(
        self,
        setup: RunnerSetup,
        env: dict[str, str],
        workdir: str,
        stdout_path: str,
        stderr_path: str,
        secrets: Mapping[str, Any] | None = None,
    ) -> None:
        sweep_stale()  # values a killed worker left in shared memory
        parent_sock, child_sock = socket.socketpair()
        # where the runner's current try is (reading, in run(), writing)
        self.board = PhaseBoard(
            os.path.join(workdir, f".runner-phase-{id(self):x}"), create=True
        )
        # what the runner prints reaches the files with ``secrets`` masked
        self.capture = Capture(stdout_path, stderr_path, secrets)
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daskscore.runner",
                    str(child_sock.fileno()),
                    str(os.getpid()),
                    self.board.path,
                ],
                pass_fds=[child_sock.fileno()],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=self.capture.stdout,
                stderr=self.capture.stderr,
                # its own process group: killed with everything it started
                start_new_session=True,
            )
        except BaseException:
            self.capture.close()
            self.board.close()
            os.unlink(self.board.path)
            raise
        self.capture.started()
        child_sock.close()
        self.workdir = workdir
        self.conn = Connection(parent_sock.detach())
        self.conn.send(setup)
        self.state = "importing"
        self.init_error: tuple[str, str] | None = None
        self.init_seconds: float | None = None
        self.init_started: float | None = None  # time.monotonic()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and self.state not in ("dead",)

    def rebind(
        self, setup: RunnerSetup, stdout_path: str, stderr_path: str, timeout: float
    ) -> bool:
        """Hand this runner (``init()`` done) to another job of the same script:
        its output folder, logs and context; False (and killed) if it cannot."""
        if not self.alive or self.state != "ready":
            return False
        self.capture.redirect(stdout_path, stderr_path)
        try:
            self.conn.send(("rebind", setup))
            msg = self._recv(timeout)
        except (EOFError, OSError):
            msg = None
        if msg is None or msg[0] != "rebound":
            self.kill()
            return False
        return True

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
        self.init_started = time.monotonic()
        return None

    def initializing_for(self) -> float | None:
        """Seconds ``init()`` has been running, or None when it is not running.

        Safe from another thread: it only peeks whether the runner answered.
        """
        if self.state != "initializing" or self.init_started is None:
            return None
        try:
            if self.proc.poll() is not None or self.conn.poll(0):
                return None  # init() ended; the next try reads how
        except (OSError, ValueError):
            return None
        return time.monotonic() - self.init_started

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
            self.init_error = (
                f"init() did not finish within init_timeout={timeout:g} s; its "
                "process was stopped (give init() longer with init_timeout, "
                "--init-timeout)",
                "",
            )
            return self.init_error
        if msg[0] == "init_done":
            self.state = "ready"
            self.init_seconds = msg[1]
            return None
        self.state = "dead"
        self.init_error = (msg[1], msg[2])
        return self.init_error

    def call(
        self,
        spec,
        frame,
        try_no: int,
        run_timeout: float,
        read_timeout: float | None = None,
    ) -> TryOutcome:
        """One try of one mini-batch in the runner; always returns an outcome.

        Reading the mini-batch and committing run()'s output may take
        ``max(read_timeout, run_timeout)``; ``read_timeout`` defaults to the
        setting ``daskscore.runner.read-timeout`` (300 s).
        """
        if read_timeout is None:
            read_timeout = _settings.get("runner.read-timeout")
        io_timeout = max(read_timeout, run_timeout)
        items = spec.items or 1
        # a large partition goes through shared memory, not the socket
        shipped = pack(frame, self.workdir)
        try:
            return self._call(spec, shipped, try_no, run_timeout, io_timeout, items)
        finally:
            discard(shipped)  # the runner removes it once read; not if it died

    def _call(self, spec, shipped, try_no, run_timeout, io_timeout, items):
        start = time.perf_counter()
        try:
            self.conn.send(("run", spec, shipped, try_no))
            msg = self._await_outcome(
                time.monotonic(), run_timeout, io_timeout, items
            )
            if isinstance(msg, TryOutcome):  # a timeout: the runner was killed
                return msg
            outcome = self._done(msg)
            outcome.result = unpack(outcome.result)
            return outcome
        except (EOFError, OSError, BrokenPipeError):
            self.state = "dead"
            self.proc.wait()
            phase, _since, seen = self.board.read()
            return _failure(
                seen if phase in (RUNNING, WRITING) and seen else items,
                TryStatus.RUN_EXCEPTION,
                f"the process running run() {_describe_exit(self.proc.returncode)}",
                run_seconds=time.perf_counter() - start,
            )

    def _await_outcome(
        self, sent: float, run_timeout: float, io_timeout: float, n: int
    ):
        """The runner's answer to a try, or the failure of a try that took too long.

        Reading may take ``io_timeout``, ``run()`` ``run_timeout``, writing its
        output ``io_timeout`` again, each from when the runner began it (its
        :class:`~daskscore.runner.phase.PhaseBoard`); one that takes longer gets
        the runner killed. The board is read only when a try has taken longer
        than 1 s (or 1/20 of ``run_timeout``): a quick try costs one message
        each way.
        """
        while True:
            phase, since, items = self.board.read()
            limit = run_timeout if phase == RUNNING else io_timeout
            # READING/IDLE from before ``sent``: the runner has not begun this
            # try yet; IDLE after it: the answer is on its way
            began = since if phase in (RUNNING, WRITING) else max(since, sent)
            left = began + limit - time.monotonic()
            wait = left
            if phase in (IDLE, READING):
                # run() may begin meanwhile, with a shorter limit: look again
                # soon (at most 1/20 of run_timeout late)
                wait = min(wait, run_timeout / 20, 1.0)
            if wait > 0 and self.conn.poll(wait):
                return self.conn.recv()
            if wait < left:
                continue  # only a look: the phase's own limit is not reached
            if self.board.read()[:2] != (phase, since) or self.conn.poll(0):
                continue  # it moved on meanwhile: time the next phase
            self.kill()
            return _timed_out(phase, since, items or n, run_timeout)

    def _done(self, msg) -> TryOutcome:
        """The outcome of a ``("done", outcome, restart)`` answer.

        ``restart`` names the exception after which the runner is not used again
        (a MemoryError): it is stopped, and the next try starts a new one.
        """
        outcome: TryOutcome = msg[1]
        restart = msg[2] if len(msg) > 2 else ""
        if restart:
            self.kill()
            outcome.error = (
                f"{outcome.error}; the runner process was restarted after "
                f"{restart} (init() runs again)"
            )
        return outcome

    def _kill_group(self) -> None:
        """SIGKILL the runner's process group: the runner and what it started."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """Stop the runner and everything it started (its process group)."""
        self.state = "dead"
        self._kill_group()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.conn.close()
        self.capture.close()
        self.board.close()
        try:
            os.unlink(self.board.path)
        except OSError:
            pass

    def shutdown(self, timeout: float | None = None) -> str:
        """Ask the script to run ``shutdown()`` and exit; return its error, if any.

        ``timeout`` defaults to the setting ``daskscore.runner.shutdown-timeout``.
        """
        if timeout is None:
            timeout = _settings.get("runner.shutdown-timeout")
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
