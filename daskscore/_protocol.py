"""What crosses a process boundary, defined once: statuses, specs, names and keys.

The client, the Dask workers and the runner processes agree on these, and on the
single-threaded BLAS settings their worker and runner processes start with. This module
imports nothing of daskscore's, so every layer may use it.

The typed contracts, from the client down to the runner and back:

- :class:`JobSpec`: what a job tells its workers (inside its ScoringPlugin);
- :class:`RunnerSetup`: what a worker tells its runner process, first message;
- :class:`MiniBatchSpec`: one mini-batch, described (client -> worker -> runner);
- :class:`TryOutcome`: how one try ended (runner -> worker);
- :class:`MiniBatchRecord`: a mini-batch's final record, with all its tries.

A record is stored as JSON (``.daskscore/records/<id>.json``), returned by the
Dask tasks to the client and read by the engine, the reports and resume as the
plain dict of :meth:`MiniBatchRecord.to_dict`: records are only ever produced
through that method, and :meth:`MiniBatchRecord.from_dict` reads any of them back,
those of earlier versions included (missing keys take their defaults).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "FINAL_JOB_STATUSES",
    "JobSpec",
    "SINGLE_THREADED_BLAS",
    "JobStatus",
    "MiniBatchRecord",
    "MiniBatchSpec",
    "RunnerSetup",
    "TryOutcome",
    "TryStatus",
    "worker_metric_key",
    "cancel_key",
    "job_key",
    "node_of",
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
      could not be written (after a ``MemoryError``, ``SystemExit`` or
      ``KeyboardInterrupt`` the runner is restarted, ``init()`` again).
    - ``RUN_TIMEOUT``: ``run()`` took longer than ``run_invocation_timeout``; the
      runner was restarted (``init()`` again).
    - ``READ_ERROR``: the input could not be read (not retried).
    - ``INIT_ERROR``: the runner's ``init()`` failed or took longer than
      ``init_timeout``, so nothing was scored.
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


def worker_metric_key(plugin: str) -> str:
    """The key of a job's worker state in a worker's heartbeat metrics."""
    return f"{plugin}-activity"


def orchestrator_key(job_id: str) -> str:
    """The Dask key of a submitted job's orchestrator task."""
    return f"daskscore-orchestrator-{job_id}"


def node_of(address: str, info: dict[str, Any]) -> str:
    """The node a worker belongs to (the client and the workers agree on it).

    ``dask worker --name NODE --nworkers N`` names its workers ``NODE-0`` ..
    ``NODE-<N-1>`` (and ``NODE`` when N is 1): those form node NODE, even when
    several nodes share a host (as in tests on one machine). Workers without a
    name of their own (named by their address) belong to their host. Both
    survive a nanny's restart of a worker, where its address does not.
    """
    name = str(info.get("name", ""))
    host = str(info.get("host") or address.split("://")[-1].rsplit(":", 1)[0])
    if not name or "://" in name or name == address or name.startswith(host + ":"):
        return host
    prefix, sep, tail = name.rpartition("-")
    if sep and tail.isdigit() and prefix:
        return prefix
    return name


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
        DataFrame, computed by the client and sent to the runner with the spec),
        ``"items"`` (a partition of a dask Bag, a list sent with the spec the same
        way; ``run()`` receives the list itself) or ``"error"`` (an input that
        could not be planned: a listed file that is gone, a Parquet file whose
        metadata cannot be read; its mini-batch fails with ``READ_ERROR``, the
        job goes on).
    paths
        The files (files, partition) or the one file (csv, jsonl, parquet, error).
    start, stop
        Byte range (csv/jsonl), row range inside ``row_groups`` (parquet), or the
        partition number and the next one (frame, items).
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
    listed
        When the files come from walking a local folder: the time that listing
        began (:func:`~daskscore.storage.files_clock`), else 0. The runner
        hands them to ``run()`` without a ``stat`` each when none of their
        folders changed since (one ``stat`` per folder: a file removed or
        renamed changes its folder), and looks for gone ones when ``run()``
        raises.
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
    listed: float = 0.0

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
        if self.kind in ("frame", "items"):
            return f"partition {self.start}"
        if self.kind == "partition":
            return ", ".join(f"{k}={v!r}" for k, v in self.key_values)
        return self.paths[0] if self.paths else "input"

    def partition_key_value(self) -> dict[str, Any]:
        """The partition key values of a mini-batch (partition_keys), else empty."""
        return dict(self.key_values or ())


# -- a job, on its workers and runners ----------------------------------------------
@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What a job tells its workers: built once on the client, inside the plugin.

    Built by :func:`daskscore.engine.jobspec.build_job_spec`; each worker's
    :class:`~daskscore.worker.plugin.ScoringPlugin` derives its runner's
    :class:`RunnerSetup` from it.
    """

    # the entry script
    bundle: bytes
    script_name: str
    script_display: str = ""
    source_display: str = ""
    arguments: list[str] = field(default_factory=list)
    environment_variables: dict[str, str] = field(default_factory=dict)
    logging_level: str = "INFO"
    # tries
    run_invocation_timeout: float
    run_max_try: int
    init_timeout: float
    # the output folder
    output_action: str
    output_format: str
    output_url: str
    output_storage_options: dict[str, Any] = field(default_factory=dict)
    parts_url: str
    records_url: str
    log_dir: str
    log_url: str
    logs_local: bool
    script_output_dir: str
    script_output_url: str
    # inputs and models: how to read each input (``MiniBatchSpec.source``): a
    # dict of ``storage_options`` and ``read_options`` (with the ``format``)
    sources: list[dict[str, Any]] = field(default_factory=list)
    named_inputs: dict[str, Any] = field(default_factory=dict)
    runner_env: dict[str, str] = field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # placement and flow: on an existing cluster, the workers the job chose
    # (names) and their nodes (node -> how many workers of it may load the
    # script, None: all of them), so that a worker that joins or restarts there
    # takes over; None: every worker (the embedded cluster)
    allowed_names: list[str] | None = None
    allowed_nodes: dict[str, int | None] | None = None
    prefetch: bool = False
    # with a failure budget, every failure must reach the client at once
    stop_on_failure: bool = False
    resource: str | None = None
    # the client's daskscore.runner.* settings (None: the worker's own)
    runner_read_timeout: float | None = None
    runner_shutdown_timeout: float | None = None
    runner_init_failures: int | None = None
    # the client's daskscore.runner.memory-limit, in bytes (None: no limit)
    runner_memory_limit: int | None = None
    # ds.map_partitions: the runner hands run()'s result back to the task
    # (TryOutcome.result) instead of committing a part
    return_result: bool = False
    # the step's run (``Run.get_context()``): id, parent, experiment, its folder
    # and workspace, with their storage options (given to the runner in its
    # setup's context, never in its environment); empty: no run folder
    run_context: dict[str, Any] = field(default_factory=dict)
    # daskscore.live-interval: a pack sends the records it commits to the client
    # at most this often (worker.feed)
    live_interval: float = 0.25
    # the embedded cluster is kept for the next job of the client's process: a
    # worker keeps its runner (init() done) for a next job of the same script
    keep_runners: bool = False
    # the mini-batches an earlier run of the step started and never recorded,
    # with their start marks (``output.commitlog``): a pack of this run counts
    # the interrupted try even when its log is not the one that has the mark
    interrupted: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunnerSetup:
    """The first message a worker sends its runner process (pickled).

    ``context`` is what :class:`~daskscore.entry_script.EntryScript` shows the
    script (``output_dir``, ``log_dir``, ``working_dir``, ``agent_name``,
    ``arguments``, ``inputs``).
    """

    bundle_dir: str
    source_display: str = ""
    script_name: str
    arguments: list[str] = field(default_factory=list)
    logging_level: str
    agent_name: str
    entry_script_log: str
    working_dir: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    parts_url: str
    output_format: str
    output_storage_options: dict[str, Any] = field(default_factory=dict)
    output_action: str
    context: dict[str, Any] = field(default_factory=dict)
    # the runner's address-space limit in bytes (RLIMIT_AS), None: no limit
    memory_limit: int | None = None
    # see JobSpec.return_result
    return_result: bool = False


# -- outcomes and records -----------------------------------------------------------
def _known(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(kw_only=True)
class TryOutcome:
    """How one try of a mini-batch ended: a row of ``processed_mini-batches.csv``.

    The runner fills in the counts, timings and errors; ``score_mini_batch``
    adds ``try_no``, ``worker``, ``started_at`` and ``elapsed_seconds``. As a
    dict (:meth:`to_dict`, inside a record's ``tries``) ``try_no`` is ``"try"``.
    """

    items: int = 0
    succeeded: int = 0
    failed: int = 0
    read_seconds: float = 0.0
    run_seconds: float = 0.0
    status: TryStatus
    error: str = ""
    traceback: str = ""
    has_output: bool = False
    warning: str = ""
    # files of a FileDataset mini-batch that could not be read (READ_ERROR)
    read_failed: int = 0
    # what run() returned (rows or elements), written to the output
    output_rows: int = 0
    try_no: int = 0
    worker: str = ""
    started_at: float | None = None
    elapsed_seconds: float = 0.0
    # the runner's peak resident memory during the try, in MiB (Linux: reset at
    # the start of each try; elsewhere the process's peak so far); None when the
    # runner could not tell (a timeout, a crash)
    peak_rss_mib: float | None = None
    # what run() returned, when the job returns results (JobSpec.return_result);
    # never part of a record
    result: Any = field(default=None, repr=False)
    # where the runner committed run()'s output on a local disk: ``[file,
    # offset, length]`` of its part in a runner's segment file (see
    # :mod:`daskscore.output.parts`); None for a part of its own (blob storage).
    # The record keeps it (``MiniBatchRecord.part``), not the try
    part: list | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.status = TryStatus(self.status)

    def to_dict(self) -> dict[str, Any]:
        """The try as stored in a record (``try_no`` as ``"try"``, status a str)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("result", "part"):
                continue
            if f.name == "try_no":
                out["try"] = value
            else:
                out[f.name] = str(value) if f.name == "status" else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TryOutcome:
        """A try of a stored record; keys it lacks (older records) take defaults."""
        kwargs = _known(cls, data)
        kwargs.pop("try_no", None)
        if "try" in data:
            kwargs["try_no"] = data["try"]
        return cls(**kwargs)


@dataclass(kw_only=True)
class MiniBatchRecord:
    """The final record of one mini-batch: ``.daskscore/records/<id>.json``.

    Its counts are those of the last try (``tries[-1]``, after any try lost with
    an earlier worker or run, which come first): all items failed unless that
    try returned or was a partial read error.
    """

    index: int
    input: str = ""
    items: int = 0
    succeeded: int = 0
    failed: int = 0
    status: TryStatus
    # no try succeeded, or an input could not be read
    failed_mini_batch: bool = False
    error: str = ""
    warning: str = ""
    has_output: bool = False
    output_rows: int = 0
    worker: str = ""
    tries: list[TryOutcome] = field(default_factory=list)
    # the committed output's segment, ``[file, offset, length]`` in the parts
    # folder; None with a part of its own, ``parts/<id>.<suffix>`` (blob storage)
    part: list | None = None

    def __post_init__(self) -> None:
        self.status = TryStatus(self.status)

    @classmethod
    def all_failed(
        cls,
        spec: MiniBatchSpec,
        status: TryStatus,
        error: str,
        tries: list[TryOutcome],
        worker: str = "",
    ) -> MiniBatchRecord:
        """A mini-batch none of whose items was scored (its tries all lost)."""
        n = spec.items or 1
        return cls(
            index=spec.index,
            input=spec.describe(),
            items=n,
            failed=n,
            status=status,
            failed_mini_batch=True,
            error=error,
            worker=worker,
            tries=tries,
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as stored, returned to the client and reported."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "status":
                value = str(value)
            elif f.name == "tries":
                value = [t.to_dict() for t in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MiniBatchRecord:
        """A stored record; keys it lacks (older records) take defaults."""
        kwargs = _known(cls, data)
        kwargs["tries"] = [TryOutcome.from_dict(t) for t in data.get("tries", [])]
        return cls(**kwargs)
