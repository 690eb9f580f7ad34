"""The runner process: imports the user's script, runs ``init()``, then ``run()``.

Started by the worker's :class:`~daskscore.worker.handle.RunnerHandle` as
``python -m daskscore.runner FD PARENT_PID``. It reads its own mini-batches
(:mod:`.reader`; a dask DataFrame's partition comes with the message instead),
calls ``run()`` (with a :class:`~daskscore.entry_script.MiniBatchContext` when it
takes two arguments), commits the output part itself
(:class:`~daskscore.output.parts.PartWriter`) and answers with the try's outcome.
For ``ds.map_partitions`` (``RunnerSetup.return_result``) it commits nothing: the
outcome carries ``run()``'s result back to the worker's task instead.
Messages with the worker go over a ``multiprocessing.connection.Connection`` on
an inherited socket:

worker -> runner: the setup (a :class:`~daskscore._protocol.RunnerSetup`) first,
then ``("run", spec, frame, try_no)``, ``("prefetch", spec)`` (no answer),
``("rebind", setup)`` (a kept runner's next job: ``("rebound",)``) and
``("shutdown",)`` (a large ``frame``, and a large result in ``done``'s outcome,
come as a :class:`~.transfer.Shipped` file in shared memory)
runner -> worker: ``("imported",)``, ``("import_error", problem, tb)``,
``("init_done", seconds)``, ``("init_error", summary, tb)``,
``("done", outcome, restart)`` (a
:class:`~daskscore._protocol.TryOutcome`; ``restart`` names the exception that
left this interpreter unusable, see :func:`unusable_after`, or is empty),
``("shutdown_done", error)``. Where a try is (reading, in ``run()``, writing
its output) is not sent: the runner writes it on its :class:`~.phase.PhaseBoard`
(``python -m daskscore.runner FD PARENT_PID BOARD``), which the worker reads
when a try takes long.

The process exits with 1 when the script cannot be imported or ``init()``
fails, with 4 after a try whose exception left it unusable (the worker starts a
new runner, ``init()`` again), and when the worker that started it is gone (its
connection closed, or it was re-parented) it kills its process group, itself
and what the script started (or exits with 3 when it leads no group of its
own).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import pickle
import resource
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from multiprocessing.connection import Connection

from .. import entry_script
from .._protocol import RunnerSetup, TryOutcome, TryStatus
from ..azureml._hook import install as install_v1_names
from ..azureml._hook import provide_mltable
from ..entry_script import MiniBatchContext, PartitionDataset
from ..output.parts import PartWriter, is_dataframe, result_frame
from ..storage import redact
from . import tracebacks
from .phase import IDLE, READING, RUNNING, WRITING, PhaseBoard
from .reader import Reader
from .tracebacks import error_line, user_traceback
from .transfer import PartitionRead, discard, pack, unpack

# Exceptions after which the runner is not used again: the worker starts a new
# one (init() runs again) before the next try. A MemoryError leaves what the
# script holds in memory (its globals, a fragmented heap), so every retry in the
# same process would fail at once; SystemExit and KeyboardInterrupt ask the
# process to end. A RecursionError is not among them: once the stack unwinds the
# interpreter is as usable as before.
UNUSABLE_AFTER = (MemoryError, SystemExit, KeyboardInterrupt)


def unusable_after(exc: BaseException) -> str:
    """The name of the exception (``exc`` or its causes) that leaves the runner
    unusable, or "" when the runner may go on."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, UNUSABLE_AFTER):
            return type(exc).__name__
        exc = exc.__cause__ or exc.__context__
    return ""


def _kill_own_group() -> None:
    """SIGKILL what the script started, when this runner leads its process group."""
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)


def _watch_parent(parent_pid: int) -> None:
    """Exit when the worker that started us is gone (we were re-parented)."""
    while True:
        if os.getppid() != parent_pid:
            sys.stdout.flush()
            _kill_own_group()  # and this process with it
            os._exit(3)
        time.sleep(0.5)


def _gone_since_planning(spec, frame) -> bool:
    """Whether a mini-batch of listed files (``spec.listed``: not looked at
    before ``run()``) has one that is gone."""
    return (
        spec.kind == "files"
        and spec.listed
        and frame is None
        and not all(os.path.isfile(p) for p in spec.paths)
    )


class TryMemory:
    """The peak resident memory of each try, at one read of /proc per try.

    Linux keeps a peak (``VmHWM``) that ``clear_refs`` resets, which walks the
    process's page tables. The peak is read as a try ends, with what the
    process holds then (``VmRSS``): when the peak is above it by more than
    ``slack_mib`` (the try freed memory), or the try was handed a partition or
    hands a result back (freed, or pickled, after the read), the peak is reset
    as the next try
    begins; otherwise that try's peak is its own within ``slack_mib``.
    ``/proc/self/status`` stays open and is read with ``pread`` (~25 us).
    """

    slack_mib = 1.0

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/self/status", os.O_RDONLY)
        except OSError:
            self._fd = None
        self._reset_next = True  # init() has left its own peak

    def _levels(self) -> tuple[int, int] | None:
        """``(VmHWM, VmRSS)`` in KiB, or None where /proc cannot tell."""
        if self._fd is None:
            return None
        try:
            status = os.pread(self._fd, 8192, 0)
            peak = int(status.split(b"VmHWM:", 1)[1].split(None, 1)[0])
            now = int(status.split(b"VmRSS:", 1)[1].split(None, 1)[0])
        except (OSError, IndexError, ValueError):
            return None
        return peak, now

    def start_try(self) -> None:
        if self._reset_next:
            _reset_peak_rss()
            self._reset_next = False

    def peak_mib(self, answers: bool = False) -> float:
        """The try's peak in MiB (``ru_maxrss`` where /proc is not there);
        ``answers``: the try's result goes back with its answer."""
        levels = self._levels()
        if levels is None:
            self._reset_next = True
            return peak_rss_mib()
        peak, now = levels
        self._reset_next = answers or peak - now > self.slack_mib * 1024
        return round(peak / 1024, 1)


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux ``clear_refs``); False when it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """The peak resident memory in MiB: ``VmHWM`` (since the last reset), else
    ``ru_maxrss`` (the process's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def limit_memory(limit: int | None) -> None:
    """Cap this process's address space at ``limit`` bytes (``RLIMIT_AS``)."""
    if not limit:
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _memory_hint(limit: int | None) -> str:
    if not limit:
        return ""
    return (
        f" (the runner's memory limit daskscore.runner.memory-limit="
        f"{limit / 2**20:.0f} MiB was reached)"
    )


def _part_writer(setup: RunnerSetup) -> PartWriter | None:
    """Where a try commits what ``run()`` returned; None for ``ds.map_partitions``
    (``run()``'s result goes back to the task, no part)."""
    if setup.return_result:
        return None
    return PartWriter(
        setup.parts_url,
        setup.output_format,
        setup.output_storage_options,
        setup.output_action == "append_row",
    )


def _forget_step_run() -> None:
    """``Run.get_context()`` of the next job is that job's run, not the cached
    run of the job this runner served before (``daskscore.azureml.run`` is
    imported only when the script imported ``azureml.core``)."""
    run_module = sys.modules.get("daskscore.azureml.run")
    if run_module is not None:
        run_module._STEP_RUN.clear()


def _takes_context(func) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def bad_return(result) -> str:
    """Why what ``run()`` returned is refused, and what to return instead."""
    kind = type(result)
    name = kind.__name__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__.split('.')[0]}.{name}"
    fix = ""
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        fix = " (e.g. wrap it in list())"
    elif hasattr(result, "tolist"):
        fix = " (e.g. its .tolist())"
    if result is None:
        what = "None"
    else:
        what = ("an " if name[:1].lower() in "aeiou" else "a ") + name
    return (
        f"run() returned {what}; return a list, tuple or pandas "
        f"DataFrame{fix}, with one element or row per successful input"
    )


def _indexed(result, partition):
    """A list ``run()`` returned for a partition read here, as a frame with the
    partition's index when it has one element per row (what the worker makes of
    it for a partition it sent); anything else as it is."""
    if isinstance(result, list | tuple) and len(result) == len(partition):
        try:
            frame = result_frame(list(result))
            frame.index = partition.index
            return frame
        except Exception:  # noqa: BLE001 - the worker's conversion will say why
            pass
    return result


class _MaskingFormatter(logging.Formatter):
    """Log lines with the job's credentials masked (``entry_script.log``)."""

    def __init__(self, fmt: str, secrets: dict) -> None:
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def _configure_logging(setup: RunnerSetup) -> logging.Logger:
    level = getattr(logging, setup.logging_level, logging.INFO)
    secrets = {
        "sources": setup.sources,
        "output": setup.output_storage_options,
        "models": setup.model_options,
        "workspace": (setup.context.get("run") or {}).get("workspace_options")
        or {},
    }
    fmt = _MaskingFormatter(
        "%(asctime)s %(levelname)s %(name)s [" + setup.agent_name + "] %(message)s",
        secrets,
    )
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.FileHandler(setup.entry_script_log, encoding="utf-8")
    handler.setFormatter(fmt)
    root.addHandler(handler)
    root.setLevel(level)
    logger = logging.getLogger("daskscore.entry_script")
    logger.setLevel(level)
    return logger


class Runner:
    """State of the runner process: the imported script and how to run it."""

    def __init__(
        self, conn: Connection, setup: RunnerSetup, board: PhaseBoard
    ) -> None:
        self.conn = conn
        self.setup = setup
        self.board = board
        self.memory = TryMemory()
        self.module = None
        # set by a try whose exception left this process unusable
        self.restart = ""
        self.script_path = os.path.join(setup.bundle_dir, setup.script_name)
        self.reader = Reader(setup.sources, setup.working_dir)
        self.writer = _part_writer(setup)

    def load(self) -> bool:
        setup = self.setup
        entry_script._CONTEXT.update(setup.context)
        entry_script.STEP_MODEL_OPTIONS.update(setup.model_options)
        tracebacks.PATH_MAP[:] = [setup.bundle_dir, setup.source_display]
        _configure_logging(setup)
        sys.path.insert(0, os.path.dirname(self.script_path))
        if setup.bundle_dir not in sys.path:
            sys.path.insert(0, setup.bundle_dir)
        sys.argv = [self.script_path, *setup.arguments]
        # `from azureml.core import Model` resolves to daskscore, unless the
        # real Azure ML SDK is installed (it then wins)
        install_v1_names()
        provide_mltable()  # `import mltable` without the package (v2 jobs)
        name = os.path.splitext(os.path.basename(self.script_path))[0]
        try:
            spec = importlib.util.spec_from_file_location(name, self.script_path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - the user's import failed
            if isinstance(exc, SyntaxError):
                problem = f"syntax error at line {exc.lineno}: {exc.msg}"
            else:
                problem = f"import failed: {error_line(exc, self.script_path)}"
            self.conn.send(
                ("import_error", problem, user_traceback(exc, self.script_path))
            )
            return False
        missing = [f for f in ("init", "run") if not callable(getattr(module, f, None))]
        if missing:
            self.conn.send(
                (
                    "import_error",
                    f"defines no {' and no '.join(m + '()' for m in missing)}",
                    "",
                )
            )
            return False
        self.module = module
        self.conn.send(("imported",))
        start = time.perf_counter()
        try:
            module.init()
        except BaseException as exc:  # noqa: BLE001 - the user's init() failed
            self.conn.send(
                (
                    "init_error",
                    f"init() raised {error_line(exc, self.script_path)}",
                    user_traceback(exc, self.script_path),
                )
            )
            return False
        self.conn.send(("init_done", time.perf_counter() - start))
        self.takes_context = _takes_context(module.run)
        return True

    def rebind(self, setup: RunnerSetup) -> None:
        """Serve another job of the same script: its output, logs and context
        (the script stays imported, ``init()`` is not called again)."""
        self.setup = setup
        entry_script._CONTEXT.update(setup.context)
        _forget_step_run()
        entry_script.STEP_MODEL_OPTIONS.update(setup.model_options)
        _configure_logging(setup)
        self.reader = Reader(setup.sources, setup.working_dir)
        if self.writer is not None:
            self.writer.close()
        self.writer = _part_writer(setup)

    def run_one(self, spec, frame, try_no: int) -> TryOutcome:
        """One try; its peak RSS is measured from the start of the try."""
        self.memory.start_try()
        self.board.set(READING, spec.items or 1)
        try:
            outcome = self._score(spec, frame, try_no)
            if outcome.status == TryStatus.RUN_EXCEPTION and _gone_since_planning(
                spec, frame
            ):  # a listed file was deleted: score the others, as a read error
                outcome = self._score(replace(spec, listed=0.0), frame, try_no)
        except MemoryError as exc:  # our own reading or accounting ran out
            self.restart = unusable_after(exc)
            error = error_line(exc, self.script_path)
            outcome = TryOutcome(
                items=spec.items or 1,
                failed=spec.items or 1,
                status=TryStatus.RUN_EXCEPTION,
                error=f"the runner ran out of memory: {error}"
                + _memory_hint(self.setup.memory_limit),
            )
        # what the try was handed or hands back is freed after the reading
        outcome.peak_rss_mib = self.memory.peak_mib(
            outcome.result is not None or frame is not None
        )
        return outcome

    def _score(self, spec, frame, try_no: int) -> TryOutcome:
        t0 = time.perf_counter()
        if isinstance(frame, PartitionRead):  # read here, as Dask would
            mini_batch, items, problem = self._read_partition(spec, frame)
        elif frame is not None:
            mini_batch, items, problem = frame, len(frame), None
        else:
            mini_batch, items, problem = self.reader.read(spec)
        read_s = time.perf_counter() - t0
        outcome = TryOutcome(
            items=items,
            failed=items,
            read_seconds=read_s,
            status=TryStatus.RUN_DONE,
        )
        if problem is not None:
            details, self.reader.read_details = self.reader.read_details, ""
            outcome.status = TryStatus.READ_ERROR
            outcome.error = problem
            outcome.traceback = details
            if spec.kind != "files" or not mini_batch:
                self.board.set(WRITING, items)
                return outcome
            # a FileDataset mini-batch still scores the files that can be read
            outcome.read_failed = items - len(mini_batch)
        self.board.set(RUNNING, items)
        if items == 0:
            outcome.failed = 0
            return outcome
        run_start = time.perf_counter()
        try:
            if self.takes_context:
                keys = spec.partition_key_value()
                context = MiniBatchContext(
                    minibatch_index=spec.index,
                    partition_key_value=keys,
                    dataset=PartitionDataset(mini_batch, keys)
                    if spec.kind == "partition" else None,
                )
                result = self.module.run(mini_batch, context)
            else:
                result = self.module.run(mini_batch)
        except BaseException as exc:  # noqa: BLE001 - the user's run() failed
            outcome.run_seconds = time.perf_counter() - run_start
            outcome.status = TryStatus.RUN_EXCEPTION
            outcome.error = error_line(exc, self.script_path)
            outcome.traceback = user_traceback(exc, self.script_path)
            self.restart = unusable_after(exc)
            if isinstance(exc, MemoryError):
                outcome.error += _memory_hint(self.setup.memory_limit)
            return outcome
        finally:
            self.reader.cleanup()
        outcome.run_seconds = time.perf_counter() - run_start
        # the timeout covers run() only, not writing what it returned
        self.board.set(WRITING, items)
        if isinstance(frame, PartitionRead):
            result = _indexed(result, mini_batch)
        return self._account(spec, mini_batch, items, result, outcome, try_no)

    def _read_partition(self, spec, read: PartitionRead):
        """A Dask partition read by this runner (``ds.map_partitions`` over
        ``dd.read_parquet``); a failed read fails the partition at once."""
        try:
            frame = read.read()
        except Exception as exc:  # noqa: BLE001 - unreadable data fails its partition
            self.reader.read_details = traceback.format_exc()
            error = f"{type(exc).__name__}: {exc}"
            problem = f"reading partition {read.index} failed: {error}"
            return None, spec.items or 1, problem
        return frame, len(frame), None

    def _account(
        self, spec, mini_batch, items, result, outcome: TryOutcome, try_no
    ) -> TryOutcome:
        if not (isinstance(result, list | tuple) or is_dataframe(result)):
            outcome.status = TryStatus.RUN_EXCEPTION
            outcome.error = bad_return(result)
            return outcome
        scored = len(mini_batch)
        returned = len(result)
        succeeded = min(returned, scored)
        if returned > scored:
            outcome.warning = (
                f"run() returned {returned} results for {scored} inputs; counted "
                f"{scored} as succeeded, wrote all {returned}"
            )
        try:
            if self.writer is None:
                outcome.result, outcome.has_output = result, True
            else:
                outcome.has_output, outcome.part = self.writer.commit(
                    spec.index, result
                )
        except Exception as exc:  # noqa: BLE001 - user values that cannot be written
            self.restart = unusable_after(exc)
            outcome.status = TryStatus.RUN_EXCEPTION
            outcome.error = (
                f"run()'s result cannot be written: {type(exc).__name__}: {exc}"
            )
            outcome.traceback = traceback.format_exc()
            return outcome
        outcome.succeeded = succeeded
        outcome.failed = items - succeeded
        outcome.output_rows = returned
        return outcome

    def shutdown(self) -> str:
        fn = getattr(self.module, "shutdown", None)
        if not callable(fn):
            return ""
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - the user's shutdown() failed
            return f"shutdown() raised {error_line(exc, self.script_path)}"
        return ""


def _send_outcome(conn: Connection, outcome: TryOutcome, restart: str = "") -> None:
    """Answer a try; a returned result that cannot be pickled fails the try.

    ``restart`` names the exception after which this runner is not used again.
    """
    try:
        conn.send(("done", outcome, restart))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        discard(outcome.result)
        outcome.result, outcome.has_output = None, False
        outcome.status = TryStatus.RUN_EXCEPTION
        outcome.error = (
            f"run()'s result cannot be sent back: {type(exc).__name__}: {exc}"
        )[:500]
        conn.send(("done", outcome, restart))


def main() -> None:
    fd = int(sys.argv[1])
    parent = int(sys.argv[2])
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    board = PhaseBoard(sys.argv[3])
    conn = Connection(fd)
    setup = conn.recv()
    limit_memory(setup.memory_limit)
    runner = Runner(conn, setup, board)
    if not runner.load():
        conn.close()
        sys.stdout.flush()
        os._exit(1)
    code = 0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the worker is gone: so is what we started
            code = 3
            break
        if msg[0] == "run":
            _, spec, frame, try_no = msg
            outcome = runner.run_one(spec, unpack(frame), try_no)
            outcome.result = pack(outcome.result, setup.working_dir)
            board.set(IDLE)
            _send_outcome(conn, outcome, runner.restart)
            if runner.restart:  # not used again: no shutdown(), the worker
                code = 4  # starts a new runner
                break
        elif msg[0] == "prefetch":  # no answer: the next mini-batch, fetched ahead
            try:
                runner.reader.prefetch(msg[1])
            except Exception:  # noqa: BLE001 - only a hint: the read will tell
                pass
        elif msg[0] == "rebind":  # kept for another job of the same script
            setup = msg[1]
            runner.rebind(setup)
            conn.send(("rebound",))
        elif msg[0] == "shutdown":
            error = runner.shutdown()
            conn.send(("shutdown_done", error))
            break
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    conn.close()
    if code == 3:
        _kill_own_group()
    os._exit(code)

