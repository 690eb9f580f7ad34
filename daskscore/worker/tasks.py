"""Scoring on a worker: tries, retries and the final record of each mini-batch.

One Dask task scores a *pack* of consecutive mini-batches (packing keeps the
scheduler cool for inputs of many small mini-batches) while every mini-batch
keeps its own record. ``score_mini_batch`` is plain Python over a ``try_once``
callable, so the retry and counting rules are testable without a cluster.
``score_partition`` is the task of ``ds.map_partitions``: one partition of a
Dask collection through the same plugin, runner and tries, its result returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .._protocol import (
    JobSpec,
    MiniBatchRecord,
    MiniBatchSpec,
    TryOutcome,
    TryStatus,
)
from ..errors import MiniBatchError
from ..output.commitlog import FileLog, PackLog, open_log
from ..runner.transfer import PartitionRead
from ..storage import redact, url_to_fs
from .feed import LiveFeed, live_topic

__all__ = [
    "score_mini_batch",
    "score_pack",
    "score_partition",
]

_TRACEBACK_LIMIT = 20_000


def score_mini_batch(
    spec: MiniBatchSpec,
    try_once: Callable[[int], TryOutcome],
    run_max_try: int,
    worker: str = "",
    lost: TryOutcome | Sequence[TryOutcome] | None = None,
) -> dict[str, Any]:
    """Try one mini-batch up to ``run_max_try`` times; return its final record.

    A try that returns (even short) ends the tries: a short return is recorded,
    not retried. An exception, a bad return value, a timeout or a dead runner
    leads to another try; after the last one all items count as failed. A read
    error is final at once (reading the same bytes again gives the same error).
    ``lost``, the tries earlier executions never finished, are recorded first:
    each one lost with its worker in this run (``WORKER_DIED``) is one of the
    ``run_max_try`` tries, so after that many the mini-batch fails without
    another call of ``run()``.

    The record is the dict of a :class:`~daskscore._protocol.MiniBatchRecord`.
    """
    if isinstance(lost, TryOutcome):
        lost = [lost]
    lost = list(lost or ())
    died = [t for t in lost if t.status == TryStatus.WORKER_DIED]
    for try_no, outcome in enumerate(died, start=1):
        outcome.try_no = try_no
    if len(died) >= run_max_try:
        return _died_every_try(spec, lost, worker)
    tries: list[TryOutcome] = []
    for try_no in range(len(died) + 1, run_max_try + 1):
        started = time.time()
        t0 = time.perf_counter()
        outcome = try_once(try_no)
        outcome.try_no = try_no
        outcome.worker = worker
        outcome.started_at = started
        outcome.elapsed_seconds = time.perf_counter() - t0
        if outcome.traceback:
            outcome.traceback = outcome.traceback[-_TRACEBACK_LIMIT:]
        tries.append(outcome)
        if outcome.status in (TryStatus.RUN_DONE, TryStatus.READ_ERROR):
            break
    return _final_record(spec, [*lost, *tries], worker)


def _final_record(
    spec: MiniBatchSpec, tries: list[TryOutcome], worker: str
) -> dict[str, Any]:
    """The record of a mini-batch whose last try is ``tries[-1]``."""
    last = tries[-1]
    scored = last.status in (TryStatus.RUN_DONE, TryStatus.READ_ERROR) and not (
        last.status == TryStatus.READ_ERROR and not last.read_failed
    )
    items = last.items
    if scored:
        succeeded = last.succeeded
        failed = items - succeeded
    else:
        succeeded, failed = 0, items
    return MiniBatchRecord(
        index=spec.index,
        input=spec.describe(),
        items=items,
        succeeded=succeeded,
        failed=failed,
        status=last.status,
        # a mini-batch fails when no try succeeded or an input could not be read
        failed_mini_batch=last.status != TryStatus.RUN_DONE,
        error=last.error,
        warning=last.warning,
        has_output=bool(last.has_output),
        output_rows=last.output_rows,
        worker=worker,
        tries=tries,
        part=last.part if last.has_output else None,
    ).to_dict()


def _died_every_try(
    spec: MiniBatchSpec, lost: list[TryOutcome], worker: str
) -> dict[str, Any]:
    """The record of a mini-batch whose worker died in each of its tries."""
    n = spec.items or 1
    died = [t for t in lost if t.status == TryStatus.WORKER_DIED]
    where = sorted({t.worker for t in died if t.worker})
    error = (
        f"the worker died in each of the {len(died)} tries of this mini-batch "
        f"({', '.join(where) or 'unknown workers'}): run() or the libraries it "
        "calls kill their process (a crash of the interpreter, out of memory, "
        "os.kill); see the worker logs"
    )
    for t in died:
        t.items, t.failed = n, n
    # the last one was not scored again: this is the mini-batch's end
    died[-1].error = died[-1].error.split("; scored again on ")[0]
    return MiniBatchRecord.all_failed(
        spec, TryStatus.WORKER_DIED, error, lost, worker
    ).to_dict()


def _lost_tries(
    log: PackLog | FileLog,
    index: int,
    worker: str,
    run: str,
    earlier: dict[str, Any] | None = None,
) -> list[TryOutcome]:
    """Mark this mini-batch as started; return the tries earlier ones lost.

    The mark is written before scoring and is followed by the record; finding
    one without a record means an earlier execution never finished: in this
    run, its worker died mid-way (Dask then runs the task again, here); in an
    earlier run (``run`` differs), that run stopped while scoring it (its
    client was killed, or its output storage became unreachable). The mark
    keeps the tries lost in this run, so that each worker death counts as one
    of the mini-batch's ``run_max_try`` tries. ``earlier`` is the mark an
    earlier run left in another pack's log (``JobSpec.interrupted``), used
    when this pack's log has none.
    """
    marks = [m for m in (log.mark(index), earlier) if m is not None]
    earlier = max(marks, key=lambda m: m.get("started_at") or 0, default=None)
    lost: list[TryOutcome] = []
    if earlier is not None:
        where = earlier.get("worker", "")
        if earlier.get("run", run) == run:
            lost = [TryOutcome.from_dict(t) for t in earlier.get("lost", [])]
            status = TryStatus.WORKER_DIED
            error = f"the worker {where} died while scoring this mini-batch"
        else:
            status = TryStatus.INTERRUPTED
            error = (
                f"an earlier run of this step stopped while {where} was scoring "
                "this mini-batch (its client was stopped, or the output storage "
                "became unreachable)"
            )
        lost.append(
            TryOutcome(
                try_no=0,
                worker=where,
                status=status,
                error=f"{error}; scored again on {worker}",
                started_at=earlier.get("started_at"),
            )
        )
    mark = {
        "worker": worker,
        "run": run,
        "started_at": time.time(),
        "lost": [t.to_dict() for t in lost],
    }
    log.start(index, mark)
    return lost


def _redacted(outcome: TryOutcome, job: JobSpec) -> TryOutcome:
    """The outcome with the job's secrets masked in its texts.

    An error message or traceback may quote anything (a script that shows its
    configuration, an SDK that echoes a request): what is recorded never holds
    a credential of the job's inputs, output or models.
    """
    secrets = {
        "sources": job.sources,
        "output": job.output_storage_options,
        "models": job.model_options,
    }
    for name in ("error", "traceback", "warning"):
        text = getattr(outcome, name)
        if text:
            setattr(outcome, name, redact(text, secrets))
    return outcome


def score_pack(plugin_name: str, specs: Sequence[MiniBatchSpec], *frames: Any) -> list:
    """The Dask task: score consecutive mini-batches on this worker's runner.

    Returns the records (dicts of :class:`~daskscore._protocol.MiniBatchRecord`).
    """
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError(
            f"daskscore: worker {worker.address} has no plugin {plugin_name!r}; "
            "was the job cancelled?"
        )
    job: JobSpec = plugin.job
    fs, records_path = url_to_fs(job.records_url, job.output_storage_options)
    feed = LiveFeed.of(plugin, worker, live_topic(plugin_name), job.live_interval)
    records = []
    with plugin.lock:
        log = open_log(fs, records_path, specs)
        try:
            for position, spec in enumerate(specs):
                if plugin.cancelled:
                    break
                record = log.record(spec.index)
                if record is not None:  # committed by an earlier execution
                    records.append(record)
                    continue
                record = _score_one(plugin, job, log, spec, position, specs, frames)
                feed.add(record)  # the client counts it now (progress, thresholds)
                records.append(record)
                if job.stop_on_failure and (
                    record["failed"] or record["failed_mini_batch"]
                ):
                    break  # let the client count it now; it requeues the rest
        finally:
            log.close()
    feed.drop(r["index"] for r in records)  # they travel with the return value
    return records


def _score_one(
    plugin: Any,
    job: JobSpec,
    log: PackLog | FileLog,
    spec: MiniBatchSpec,
    position: int,
    specs: Sequence[MiniBatchSpec],
    frames: Sequence[Any],
) -> dict[str, Any]:
    """Score and commit one mini-batch of a pack; return its record."""
    lost = _lost_tries(log, spec.index, plugin.agent_name, plugin.name,
                       job.interrupted.get(spec.index))
    frame = frames[position] if frames else None
    if position + 1 < len(specs):
        plugin.prefetch(specs[position + 1])
    else:
        plugin.prefetch_queued()

    def try_once(try_no: int) -> TryOutcome:
        return _redacted(plugin.try_mini_batch(spec, frame, try_no), job)

    record = score_mini_batch(
        spec, try_once, job.run_max_try, worker=plugin.agent_name, lost=lost
    )
    log.commit(spec.index, record)
    if getattr(plugin, "activity", None) is not None:
        plugin.activity.committed(record)
    return record


def _plugin_here(plugin_name: str):
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError(
            f"daskscore: worker {worker.address} has no plugin {plugin_name!r}; "
            "was its scorer released (ds.scorer) before compute()?"
        )
    return plugin


def score_partition(plugin_name: str, index: int, partition: Any, kind: str) -> Any:
    """The Dask task of ``ds.map_partitions``: one partition, one ``run()`` call.

    The same plugin, runner and tries as a step's mini-batch (``score_mini_batch``:
    retries up to ``run_max_try``, a hung ``run()`` stopped), but nothing is
    written: ``partition`` (a pandas DataFrame, ``kind="frame"``, or a list,
    ``kind="items"``; or a :class:`~daskscore.runner.transfer.PartitionRead`
    that the runner reads itself) goes to the runner with the spec, and what ``run()``
    returned comes back as the task's result (None for an empty partition).

    Raises :class:`~daskscore.errors.MiniBatchError` when no try succeeded.
    """
    plugin = _plugin_here(plugin_name)
    job: JobSpec = plugin.job
    # a PartitionRead is read by the runner: its rows are counted there
    items = 0 if isinstance(partition, PartitionRead) else len(partition)
    spec = MiniBatchSpec(
        index=index, kind=kind, start=index, stop=index + 1, items=items
    )
    results: dict[int, Any] = {}

    def try_once(try_no: int) -> TryOutcome:
        outcome = plugin.try_mini_batch(spec, partition, try_no)
        results[try_no], outcome.result = outcome.result, None
        return _redacted(outcome, job)

    with plugin.lock:
        record = score_mini_batch(
            spec, try_once, job.run_max_try, worker=plugin.agent_name
        )
    last = record["tries"][-1]
    if record["failed_mini_batch"]:
        raise MiniBatchError(
            job.script_display or job.script_name,
            index,
            len(record["tries"]),
            record["error"],
            last.get("traceback", ""),
        )
    return results.get(last["try"])
