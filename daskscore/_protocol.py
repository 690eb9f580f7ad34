"""What crosses a process boundary, defined once: statuses, specs, names and keys.

The client, the Dask workers and the runner processes agree on these, and on the
single-threaded BLAS settings their worker and runner processes start with. This module
imports nothing of daskscore's, so every layer may use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FINAL_JOB_STATUSES",
    "SINGLE_THREADED_BLAS",
    "JobStatus",
    "MiniBatchSpec",
    "TryStatus",
    "cancel_key",
    "job_key",
    "orchestrator_key",
    "part_name",
    "plugin_name",
    "record_name",
    "set_single_threaded",
]


class TryStatus(enum.StrEnum):
    """How one try of a mini-batch ended (``processed_mini-batches.csv``'s status).

    - ``RUN_DONE``: ``run()`` returned a list, tuple or DataFrame that was committed.
    - ``RUN_EXCEPTION``: ``run()`` raised, returned something else, or its result
      could not be written.
    - ``RUN_TIMEOUT``: ``run()`` took longer than ``run_invocation_timeout``; the
      runner was restarted (``init()`` again).
    - ``READ_ERROR``: the input could not be read (not retried).
    - ``INIT_ERROR``: the runner's ``init()`` failed, so nothing was scored.
    - ``WORKER_DIED``: the try was lost with its worker (SIGKILL, out of memory).
    - ``INTERRUPTED``: an earlier run of the step left the try unfinished.
    """

    RUN_DONE = "RUN_DONE"
    RUN_EXCEPTION = "RUN_EXCEPTION"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    READ_ERROR = "READ_ERROR"
    INIT_ERROR = "INIT_ERROR"
    WORKER_DIED = "WORKER_DIED"
    INTERRUPTED = "INTERRUPTED"


class JobStatus(enum.StrEnum):
    """A job's status, as published on the scheduler and in the reports."""

    SUBMITTED = "Submitted"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


FINAL_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED)


# -- names inside a step's output folder --------------------------------------------
STATE_DIR = ".daskscore"
PARTS_DIR = "parts"
RECORDS_DIR = "records"
MANIFEST_FILE = "manifest.json"
SCRIPT_OUTPUT_DIR = "outputs"
LOGS_DIR = "logs"
# What a part is stored as, by the collected file's format. Parquet output is
# committed as uncompressed Arrow IPC: writing and reading it back is a copy,
# where a Parquet part would be encoded twice (in the runner and when collected).
PART_SUFFIX = {"txt": "txt", "csv": "csv", "parquet": "arrow"}
# the layout of parts and records (2: Parquet output as Arrow IPC); an output
# folder of another layout starts afresh instead of resuming
PARTS_LAYOUT = 2


def part_name(index: int, fmt: str) -> str:
    """The file name of mini-batch ``index``'s committed part."""
    return f"{index:09d}.{PART_SUFFIX.get(fmt, fmt)}"


def record_name(index: int) -> str:
    """The file name of mini-batch ``index``'s final record."""
    return f"{index:09d}.json"


def record_index(name: str) -> int | None:
    """The mini-batch id of a record file name, or None for anything else."""
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(".json") or base.startswith(".") or not base[:-5].isdigit():
        return None
    return int(base[:-5])


# -- keys on the scheduler -----------------------------------------------------------
JOBS_KEY = ("daskscore", "jobs")


def job_key(job_id: str) -> list[str]:
    """Where a job publishes its state in the scheduler's metadata."""
    return [*JOBS_KEY, job_id]


def cancel_key(job_id: str) -> list[str]:
    """The scheduler metadata a ``daskscore cancel`` sets for a job."""
    return ["daskscore", "cancel", job_id]


def plugin_name(job_id: str) -> str:
    """The name of a job's WorkerPlugin (and of its worker resource)."""
    return f"daskscore-{job_id}"


def orchestrator_key(job_id: str) -> str:
    """The Dask key of a submitted job's orchestrator task."""
    return f"daskscore-orchestrator-{job_id}"


# The daskscore routes on the scheduler's dashboard
DASHBOARD_PATH = "/daskscore/"


# -- the environment of worker and runner processes ----------------------------------
# A worker process runs one run() at a time, one process per core: one BLAS/OpenMP
# thread each (as Dask's nanny does), unless the environment says otherwise.
SINGLE_THREADED_BLAS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def set_single_threaded(env: dict[str, str]) -> dict[str, str]:
    """Set :data:`SINGLE_THREADED_BLAS` in ``env`` where not set; returns ``env``."""
    for name, value in SINGLE_THREADED_BLAS.items():
        env.setdefault(name, value)
    return env


# -- mini-batches ---------------------------------------------------------------------
@dataclass(frozen=True)
class MiniBatchSpec:
    """One mini-batch: what a single ``run()`` call receives, described, not loaded.

    Attributes
    ----------
    index
        Position in the step's inputs (0-based); the mini-batch id.
    kind
        How it is read: ``"files"`` (consecutive files of a FileDataset, in path
        order), ``"csv"`` and ``"jsonl"`` (a byte range of one file, rows cut at
        line ends; the whole file when it is small, compressed, or a CSV with
        ``support_multi_line``), ``"parquet"`` (row groups of one file, sliced by
        rows), ``"partition"`` (the rows of one combination of ``partition_keys``
        values, from every file of the input), ``"frame"`` (a partition of a dask
        DataFrame, computed by the client and sent to the runner with the spec)
        or ``"error"`` (an input that could not be planned: a listed file that is
        gone, a Parquet file whose metadata cannot be read; its mini-batch fails
        with ``READ_ERROR``, the job goes on).
    paths
        The files (files, partition) or the one file (csv, jsonl, parquet, error).
    start, stop
        Byte range (csv/jsonl), row range inside ``row_groups`` (parquet), or the
        partition number and the next one (frame).
    row_groups
        Parquet row groups read for this mini-batch.
    items
        Item count when known before reading (files, parquet rows, partitions;
        1 for an error).
    error
        Why the input could not be planned (``kind == "error"``).
    key_values
        The partition key values of a ``"partition"`` mini-batch.
    source
        Which of the step's inputs it comes from (0 = the first).
    """

    index: int
    kind: str
    paths: tuple[str, ...] = ()
    start: int = 0
    stop: int = 0
    row_groups: tuple[int, ...] = ()
    items: int | None = None
    error: str | None = None
    key_values: tuple[tuple[str, Any], ...] = ()
    source: int = 0

    def describe(self) -> str:
        """A short human-readable description of the input, for logs."""
        if self.kind == "files":
            if len(self.paths) == 1:
                return self.paths[0]
            return f"{self.paths[0]} .. {self.paths[-1]} ({len(self.paths)} files)"
        if self.kind in ("csv", "jsonl"):
            return f"{self.paths[0]} bytes {self.start}-{self.stop}"
        if self.kind == "parquet":
            groups = (
                f"row group {self.row_groups[0]}"
                if len(self.row_groups) == 1
                else f"row groups {self.row_groups[0]}-{self.row_groups[-1]}"
            )
            return f"{self.paths[0]} {groups} rows {self.start}-{self.stop}"
        if self.kind == "frame":
            return f"partition {self.start}"
        if self.kind == "partition":
            return ", ".join(f"{k}={v!r}" for k, v in self.key_values)
        return self.paths[0] if self.paths else "input"

    def partition_key_value(self) -> dict[str, Any]:
        """The partition key values of a mini-batch (partition_keys), else empty."""
        return dict(self.key_values or ())
