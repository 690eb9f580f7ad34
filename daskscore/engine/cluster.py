"""The embedded cluster: a scheduler in this process, workers in subprocesses.

Why not ``LocalCluster``: its worker processes are started with multiprocessing's
*spawn*, which re-imports the caller's ``__main__`` module; a user script that
calls ``step.run()`` without an ``if __name__ == "__main__":`` guard would start
a cluster inside every worker. Workers started as
``python -m distributed.cli.dask_spec`` (what ``dask spec`` runs) import nothing
of the caller. The scheduler (and its dashboard) stays in this process, so
starting is as fast as LocalCluster or faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from typing import Any

from distributed import Scheduler, SpecCluster
from distributed.deploy.subprocess import Subprocess

from .._protocol import SINGLE_THREADED_BLAS

__all__ = [
    "SINGLE_THREADED_ENV",
    "free_dashboard_address",
    "quiet_embedded_cluster",
    "start_embedded_cluster",
]

# what an embedded worker process is started with, unless its environment says
# otherwise: one BLAS/OpenMP thread, and freed memory given back to the system
SINGLE_THREADED_ENV = {**SINGLE_THREADED_BLAS, "MALLOC_TRIM_THRESHOLD_": "65536"}


class _WorkerProcess(Subprocess):
    """One ``distributed.Worker`` in its own Python process."""

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
        super().__init__()

    async def _start(self) -> None:
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
        "options": {"host": "127.0.0.1", "dashboard_address": dashboard_address},
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
