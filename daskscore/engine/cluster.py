"""The embedded cluster: a scheduler in this process, workers in subprocesses.

A worker that dies is started again (see ``_WorkerProcess``).

Why not ``LocalCluster``: its worker processes are started with multiprocessing's
*spawn*, which re-imports the caller's ``__main__`` module; a user script that
calls ``step.run()`` without an ``if __name__ == "__main__":`` guard would start
a cluster inside every worker. Workers started as
``python -m distributed.cli.dask_spec`` (what ``dask spec`` runs) import nothing
of the caller. The scheduler (and its dashboard) stays in this process, so
starting is as fast as LocalCluster or faster.

An embedded cluster can outlive its job (:func:`embedded_cluster` /
:func:`release_embedded_cluster`, setting ``daskscore.embedded-cluster.keep``):
a second ``step.run()`` in the same process (a notebook) then starts no
scheduler and no worker interpreters. A kept cluster is closed at interpreter
exit, by :func:`close_embedded_clusters`, or when a job on it did not end well.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from distributed import Client, Scheduler, SchedulerPlugin, SpecCluster
from distributed.deploy.subprocess import Subprocess

from .. import _settings
from .._protocol import SINGLE_THREADED_BLAS
from ..scheduler.dashboard import attach_dask_pages

__all__ = [
    "SINGLE_THREADED_ENV",
    "close_embedded_clusters",
    "describe_exit",
    "embedded_cluster",
    "free_dashboard_address",
    "quiet_embedded_cluster",
    "release_embedded_cluster",
    "start_embedded_cluster",
    "worker_exits",
]

logger = logging.getLogger("daskscore")

# what an embedded worker process is started with, unless its environment says
# otherwise: one BLAS/OpenMP thread, and freed memory given back to the system
SINGLE_THREADED_ENV = {**SINGLE_THREADED_BLAS, "MALLOC_TRIM_THRESHOLD_": "65536"}
# a dead worker is started again after this pause, doubled while it keeps dying
# (up to the maximum), back to the first once it lived a while
_RESTART_PAUSE_S = 0.2
_RESTART_PAUSE_MAX_S = 5.0
_STABLE_S = 30.0


class _WorkerProcess(Subprocess):
    """One ``distributed.Worker`` in its own Python process, restarted if it dies.

    Without a nanny nothing else would replace a worker that was killed (its
    runner killed it, the kernel's OOM killer): the job would wait for good. A
    worker that exits with a non-zero status is started again under the same
    name (after a short pause that grows while it keeps dying), in this process's
    event loop: no nanny process to start, so starting the cluster costs
    nothing more. Its exit statuses are kept for the job's root cause.
    """

    def __init__(
        self,
        scheduler: str,
        name: str | None = None,
        worker_kwargs: dict[str, Any] | None = None,
        log_path: str | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.name = name
        self.worker_kwargs = dict(worker_kwargs or {})
        self.log_path = log_path
        self.exit_codes: list[int] = []
        self._closing = False
        self._supervisor: asyncio.Task | None = None
        super().__init__()

    async def _start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.ensure_future(self._supervise())

    async def _supervise(self) -> None:
        pause = _RESTART_PAUSE_S
        while not self._closing and self.process is not None:
            started = time.monotonic()
            code = await self.process.wait()
            if self._closing or code == 0:
                return
            self.exit_codes.append(code)
            if time.monotonic() - started > _STABLE_S:
                pause = _RESTART_PAUSE_S
            self._note(f"worker {self.name} {describe_exit(code)}; starting it again")
            await asyncio.sleep(pause)
            pause = min(2 * pause, _RESTART_PAUSE_MAX_S)
            if self._closing:
                return
            await self._spawn()

    def _note(self, text: str) -> None:
        logger.warning("embedded %s", text)
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"daskscore: {text}\n")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        await super().close()

    async def _spawn(self) -> None:
        opts = {**self.worker_kwargs, "name": self.name}
        cmd = [
            sys.executable,
            # the module behind `dask spec`, without the `dask` command's scan of
            # every installed package's entry points (~0.5 s per worker)
            "-m",
            "distributed.cli.dask_spec",
            self.scheduler,
            "--spec",
            json.dumps({"cls": "distributed.Worker", "opts": opts}),
        ]
        env = dict(os.environ)
        env.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        # one process per core: one BLAS/OpenMP thread each (as Dask's nanny does)
        for name, value in SINGLE_THREADED_ENV.items():
            env.setdefault(name, value)
        out = open(self.log_path, "ab") if self.log_path else asyncio.subprocess.DEVNULL
        try:
            self.process = await asyncio.create_subprocess_exec(
                *cmd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        finally:
            if self.log_path:
                out.close()


def describe_exit(code: int) -> str:
    """A process's exit status in words: ``killed by SIGKILL``, ``exit code 3``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def worker_exits(cluster: Any) -> dict[str, list[int]]:
    """The exit statuses of the embedded cluster's workers that died, by name."""
    out: dict[str, list[int]] = {}
    for name, worker in dict(getattr(cluster, "workers", {}) or {}).items():
        codes = list(getattr(worker, "exit_codes", ()))
        if codes:
            out[str(name)] = codes
    return out


def start_embedded_cluster(
    n_workers: int,
    dashboard_address: str | None,
    log_dir: str | None = None,
    memory_limit: str | int = "auto",
) -> SpecCluster:
    """Start a scheduler here and ``n_workers`` single-threaded worker processes."""
    from distributed.worker_memory import parse_memory_limit

    # The scheduler's batched streams log an INFO traceback when a worker closes
    # its connection at shutdown, after the job is over; that is not news.
    batched = logging.getLogger("distributed.batched")
    if batched.level == logging.NOTSET:
        batched.setLevel(logging.WARNING)
    limit = parse_memory_limit(
        memory_limit, 1, n_workers, logger=logging.getLogger("daskscore")
    )
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    workers = {
        f"worker-{i}": {
            "cls": _WorkerProcess,
            "options": {
                "name": f"worker-{i}",
                "worker_kwargs": {"nthreads": 1, "memory_limit": limit},
                "log_path": os.path.join(log_dir, f"worker-{i}.log")
                if log_dir
                else None,
            },
        }
        for i in range(n_workers)
    }
    scheduler = {
        "cls": Scheduler,
        # the HTTP server (daskscore's routes, /metrics) at once, Dask's Bokeh
        # pages on their first visit (attach_dask_pages)
        "options": {
            "host": "127.0.0.1",
            "dashboard_address": dashboard_address,
            "dashboard": False,
        },
    }
    cluster = SpecCluster(
        workers=workers,
        scheduler=scheduler,
        silence_logs=logging.CRITICAL,
        name="daskscore",
    )
    return cluster


def free_dashboard_address() -> str:
    """Dask's usual dashboard port when it is free, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8787))
        except OSError:
            return "127.0.0.1:0"
    return "127.0.0.1:8787"


@contextlib.contextmanager
def quiet_embedded_cluster():
    """Hide the embedded scheduler's INFO chatter (it runs in this process)."""
    import distributed  # noqa: F401 - importing it resets its log levels

    loggers = [logging.getLogger(n) for n in ("distributed", "bokeh", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.ERROR))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# embedded clusters kept for the next job of this process, by worker count
_KEPT: dict[int, tuple[SpecCluster, Client]] = {}


def keep_embedded_cluster() -> bool:
    """Whether a job leaves its embedded cluster for the next one (the setting
    ``daskscore.embedded-cluster.keep``: true, false, or "auto": in an
    interactive session, a notebook or a REPL)."""
    keep = _settings.get("embedded-cluster.keep")
    if keep == "auto":
        return hasattr(sys, "ps1") or "ipykernel" in sys.modules
    return bool(keep)


def _usable(cluster: SpecCluster, client: Client, n_workers: int) -> bool:
    try:
        alive = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    except Exception:  # noqa: BLE001 - a closed or broken cluster: start anew
        return False
    return client.status == "running" and alive == n_workers


def embedded_cluster(
    n_workers: int, log_dir: str | None
) -> tuple[SpecCluster, Client, bool]:
    """``(cluster, client, reused)``: a kept cluster of ``n_workers``, else a new one.

    A reused cluster's worker logs go to ``log_dir`` from then on only for
    workers started again; its exit statuses start afresh for the new job.
    """
    kept = _KEPT.pop(n_workers, None)
    if kept is not None:
        cluster, client = kept
        if _usable(cluster, client, n_workers):
            for worker in cluster.workers.values():
                worker.exit_codes = []
                if log_dir:
                    worker.log_path = os.path.join(log_dir, f"{worker.name}.log")
            return cluster, client, True
        _close(cluster, client)
    cluster = start_embedded_cluster(
        n_workers, free_dashboard_address(), log_dir=log_dir
    )
    client = Client(cluster)
    try:
        client.wait_for_workers(n_workers, timeout=120)
    except BaseException:
        _close(cluster, client)
        raise
    # Bokeh's import (~1 s of CPU) only for a job someone looks at
    attach_dask_pages(cluster.scheduler)
    client.run_on_scheduler(_short_message_logs)
    return cluster, client, False


# Each of Dask's batched streams keeps its last 1,000 batches of messages for
# debugging (``distributed.admin.low-level-log-length``), and with them every
# pack task it carried, its specs and their paths: ~13 KB a mini-batch of 100
# files, 130 MB for 10,000 mini-batches in the client's process (the embedded
# scheduler's streams to its workers, the client's to its scheduler).
MESSAGE_LOG_LENGTH = 20


def shorten_message_log(stream: Any) -> None:
    """Keep the last :data:`MESSAGE_LOG_LENGTH` batches a ``BatchedSend`` sent."""
    log = getattr(stream, "recent_message_log", None)
    if log is not None and (log.maxlen or 0) > MESSAGE_LOG_LENGTH:
        stream.recent_message_log = collections.deque(log, maxlen=MESSAGE_LOG_LENGTH)


class _ShortMessageLogs(SchedulerPlugin):
    """The embedded scheduler's stream to each worker, also one started again."""

    name = "daskscore-short-message-logs"

    def add_worker(self, scheduler: Any, worker: str) -> None:
        shorten_message_log(scheduler.stream_comms.get(worker))


def _short_message_logs(dask_scheduler: Any) -> None:
    for stream in dask_scheduler.stream_comms.values():
        shorten_message_log(stream)
    dask_scheduler.add_plugin(_ShortMessageLogs(), idempotent=True)


def release_embedded_cluster(
    cluster: SpecCluster, client: Client, n_workers: int, keep: bool
) -> None:
    """Keep the cluster for the next job (``keep``, no worker died), or close it."""
    if keep and not worker_exits(cluster) and n_workers not in _KEPT:
        _KEPT[n_workers] = (cluster, client)
        return
    _close(cluster, client)


def _close(cluster: SpecCluster, client: Client) -> None:
    try:
        client.close()
    finally:
        cluster.close()


@atexit.register
def close_embedded_clusters() -> None:
    """Close the embedded clusters kept for later jobs (also run at exit)."""
    while _KEPT:
        _n, (cluster, client) = _KEPT.popitem()
        with contextlib.suppress(Exception):
            _close(cluster, client)
