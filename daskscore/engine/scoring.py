"""The scoring loop of one job: submit packs, consume records as they complete.

Packs of mini-batches (and dask DataFrame partitions) go to the cluster as Dask
tasks in input order (task priorities). Each mini-batch is counted as soon as
its record is committed (progress, live thresholds, the init watchdog): workers
send a summary of each record as it is committed (``worker.feed``, a Dask event
topic), and each finished task returns its mini-batches' final records; a
mini-batch is counted once, whichever comes first (the full record replaces a
summary). On a breach, or a ``daskscore cancel``, no new mini-batch starts and
the running ones finish. A pack that stopped early after a
failure (the job has a failure budget) is requeued without the mini-batches done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
from distributed import KilledWorker, as_completed

from .._protocol import JobStatus, MiniBatchSpec
from ..errors import JobError
from ..progress import JobProgress, ProgressCallback
from ..scheduler.reaping import drop_topic
from ..storage import is_storage_error
from ..worker.control import cancel_plugin, init_running
from ..worker.feed import live_topic
from ..worker.tasks import score_pack
from .live import JobBoard
from .liveness import Liveness
from .placement import iter_packs
from .summary import lost_with_worker, scheduler_lost
from .thresholds import Tally

__all__ = ["CANCELLED", "ScoringLoop"]

logger = logging.getLogger("daskscore")

CANCELLED = "cancelled on request (daskscore cancel)"
# at most this many "N/M mini-batches" lines in job_progress_overview.txt
_PROGRESS_LINES = 40


class ScoringLoop:
    """Runs the mini-batches of one job on a cluster and collects their records.

    ``records`` is shared with the job: records already committed (resume) are
    in it before the loop starts, and the loop adds every new one.
    """

    def __init__(
        self,
        client: Any,
        job: Any,
        records: dict[int, dict[str, Any]],
        tally: Tally,
        progress: JobProgress,
        progress_cb: ProgressCallback,
        board: JobBoard,
        progress_lines: list[str],
    ) -> None:
        self.client = client
        self.job = job  # plugin_name, job_id, step, workers, resource
        self.records = records
        self.tally = tally
        self.progress = progress
        self.progress_cb = progress_cb
        self.board = board
        self.progress_lines = progress_lines
        self.reason = ""
        self.futures: list[Any] = []
        self.pending: dict[str, list[MiniBatchSpec]] = {}
        # the mini-batch ids of every task ever submitted (a dead worker's tasks
        # may be requeued since)
        self.submitted: dict[str, list[int]] = {}
        # packs not submitted yet (see run): at most max_in_flight tasks wait
        self.packs: Iterator[list[MiniBatchSpec]] = iter(())
        self.max_in_flight = 0
        self.serial = 0
        self.placement = (
            {"resources": {job.resource: 1}} if job.workers else {}
        )
        self.done = threading.Event()
        self.cancel_requested = threading.Event()
        self._done_seen = -1  # mini-batches done at the last init() poll
        self.lost_scheduler = False
        self.liveness = Liveness(
            job.no_progress_timeout, job.resource if job.workers else None
        )
        self._lock = threading.RLock()  # the live feed's thread counts too
        self.live = LiveRecords(client, live_topic(job.plugin_name), self)

    # -- submitting ---------------------------------------------------------------
    def _key(self, first: int, last: int | None = None, suffix: str = "") -> str:
        span = f"{first:06d}" if last is None else f"{first:06d}-{last:06d}"
        return f"{self.job.step.name}-mb-{span}-{self.job.job_id[-8:]}{suffix}"

    def submit_pack(self, pack: list[MiniBatchSpec], suffix: str = "") -> Any:
        # earlier mini-batches first: the output streams in order and an early
        # failure is seen early
        future = self.client.submit(
            score_pack,
            self.job.plugin_name,
            pack,
            key=self._key(pack[0].index, pack[-1].index, suffix),
            pure=False,
            priority=-pack[0].index,
            **self.placement,
        )
        self._track(future, pack)
        return future

    def _track(self, future: Any, pack: list[MiniBatchSpec]) -> None:
        self.serial += 1
        self.futures.append(future)
        self.pending[future.key] = pack
        self.submitted[future.key] = [s.index for s in pack]

    def submit_frames(self, inputs: list[Any], frames: list[MiniBatchSpec]) -> None:
        """dask DataFrame partitions: each is computed and scored where it lands.

        A frame mini-batch's ``source`` is its input, ``start`` its partition.
        """
        delayed: dict[int, list[Any]] = {}
        for spec in frames:
            if spec.source not in delayed:
                delayed[spec.source] = inputs[spec.source].frame.to_delayed()
            task = dask.delayed(score_pack, pure=False)(
                self.job.plugin_name,
                [spec],
                delayed[spec.source][spec.start],
                dask_key_name=self._key(spec.index),
            )
            future = self.client.compute(task, priority=-spec.index, **self.placement)
            self._track(future, [spec])

    def _workers(self) -> int:
        if self.job.workers is not None:
            return len(self.job.workers)
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    # -- the loop -----------------------------------------------------------------
    def run(self, todo: Any, inputs: list[Any]) -> str:
        """Score ``todo`` (a list, or the job's lazy view of its plan); return
        why the job stopped early ("" when it did not). Packs are cut as earlier
        ones end, at most ``max_in_flight`` tasks waiting: no list of the plan."""
        frames = _frames(todo)
        if frames:
            self.submit_frames(inputs, frames)
        rest = (s for s in todo if s.kind != "frame")
        max_pack, divisor = self.job.pack_sizes
        self.live.start()  # before the first task: no record is missed
        workers = self._workers()
        self.packs = iter_packs(
            rest, len(todo) - len(frames), workers, max_pack, divisor
        )
        # enough queued for every worker to go on while the next packs are cut
        self.max_in_flight = max(8, 4 * max(1, workers) * divisor)
        self._submit_more()
        self.liveness.subscribe(self.client)
        threading.Thread(
            target=self._watch_cancel, daemon=True, name="daskscore-cancel-watch"
        ).start()
        # on the client's own loop: it need not be the default client
        loop = self.client.loop
        self.stream = as_completed(self.futures, with_results=False, loop=loop)
        try:
            self._consume(self.stream)
        finally:
            self.live.stop()
            self.liveness.unsubscribe(self.client)
        self.done.set()
        if self.cancel_requested.is_set() and not self.reason:
            self.reason = CANCELLED
        left = (
            todo.count_left()
            if hasattr(todo, "count_left")
            else sum(1 for s in todo if s.index not in self.records)
        )
        gone = self.lost_scheduler or _scheduler_gone(self.client)
        if left and not self.reason and gone:
            self.reason = scheduler_lost(_scheduler_address(self.client), left)
            logger.warning("stopping the job: %s", self.reason)
        return self.reason

    def _submit_more(self, stream: Any = None) -> None:
        """Submit the next packs, up to ``max_in_flight`` tasks waiting."""
        with self._lock:  # the cancel watcher reads the futures and requeues
            # no task once the scheduler is lost: it would never end
            while len(self.pending) < self.max_in_flight and not (
                self.reason or self.lost_scheduler or _scheduler_gone(self.client)
            ):
                pack = next(self.packs, None)
                if pack is None:
                    break
                future = self.submit_pack(pack)
                if stream is not None:
                    stream.add(future)
            if len(self.futures) > 4 * self.max_in_flight:
                self.futures = [f for f in self.futures if not f.done()]

    def _consume(self, stream: Any) -> None:
        """Count each finished task's records; requeue what a pack left."""
        breach = None
        for future in stream:
            self.lost_scheduler |= _lost_connection(future)
            if future.status == "cancelled" and (self.lost_scheduler or self.reason):
                continue  # by us, or its scheduler is gone (by Dask: scored again)
            records = self._records_of(future)
            future.release()
            with self._lock:
                breach = self._count(records) or breach
                self.board.publish(
                    self.client, self.progress, JobStatus.RUNNING, self.reason
                )
            # a pack returns early after a failure so that the failure is counted
            # at once; the rest of the pack goes back into the queue
            done = {r["index"] for r in records}
            with self._lock:  # the cancel watcher requeues packs too
                pack = self.pending.pop(future.key, [])
                left = [s for s in pack if s.index not in done]
                stop = breach or self.reason or self.lost_scheduler
                if left and not (stop or _scheduler_gone(self.client)):
                    stream.add(self.submit_pack(left, suffix=f"-r{self.serial}"))
            if breach and _stop_for(self, breach):
                self.cancel()
            self._submit_more(stream)

    def _records_of(self, future: Any) -> list[dict[str, Any]]:
        if future.status != "error":
            records = _fetched_records(future, self.pending.get(future.key, []))
            self.lost_scheduler |= records is None  # read at collection
            return records or []
        try:
            return self._failed_pack(
                self.pending.get(future.key, []), future.exception()
            )
        except JobError:
            self.stop()
            raise

    def _count(self, records: list[dict[str, Any]], live: bool = False) -> str | None:
        """Count new records; the first reason to stop, if any."""
        breach = None
        for record in records:
            if record["index"] in self.records:
                if not live and self.records.is_live(record["index"]):
                    self.records[record["index"]] = record  # the full record
                continue
            self.records[record["index"]] = record
            self.progress.init_workers = 0  # asked again when progress stalls
            self.liveness.progress(record)
            stop = self.tally.add(record)
            self.board.stats.count(record)
            breach = breach or stop
            self.progress_cb.update(self.progress)
            _maybe_progress_line(self.progress, self.progress_lines)
        return breach

    def _failed_pack(self, specs: list[MiniBatchSpec], exc: BaseException) -> list:
        if is_storage_error(exc) and not any(s.kind == "frame" for s in specs):
            # a task's own storage work is recording its mini-batches' outcome
            raise self.job.storage_failure(
                f"mini-batches {[s.index for s in specs]} cannot be recorded in the "
                "output folder",
                exc,
            ) from exc
        if isinstance(exc, KilledWorker) and not any(s.kind == "frame" for s in specs):
            # Dask gave up after its own retries; the pack goes back into the
            # queue under a new key: the task counts each lost try against the
            # mini-batch's run_max_try (the start markers) and fails it then
            return []
        if not isinstance(exc, KilledWorker):
            raise JobError(
                f"internal error while scoring mini-batches "
                f"{[s.index for s in specs]}: {type(exc).__name__}: {exc} "
                "(this is a daskscore bug; please report it with logs/)"
            ) from exc
        return [lost_with_worker(s, exc) for s in specs if s.index not in self.records]

    # -- stopping -----------------------------------------------------------------
    def cancel(self) -> None:
        """No new mini-batch starts; those being scored finish and are committed."""
        # every worker: a worker that replaced a dead one holds the plugin too
        self.client.run(cancel_plugin, self.job.plugin_name, on_error="ignore")
        for f in self.futures:
            if not f.done():
                f.cancel()

    def _watch_cancel(self) -> None:
        """Stop the job when someone asks (``daskscore cancel JOB_ID``)."""
        while not self.done.wait(self.job.cancel_poll):
            _poll_init(self)
            self.board.publish(
                self.client, self.progress, JobStatus.RUNNING, self.reason, force=True
            )
            if self._stuck():
                return
            _requeue_unrunnable(self)
            requested = self.board.cancel_requested(self.client)
            if requested is None:
                return
            if requested:
                self.cancel_requested.set()
                self.reason = CANCELLED
                logger.warning("stopping the job: %s", self.reason)
                self.cancel()
                return

    def _stuck(self) -> bool:
        """Stop the job when it cannot make progress (see :mod:`.liveness`)."""
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception:  # noqa: BLE001 - the scheduler is going away
            return False
        if self.reason or not self.liveness.check(workers, time.monotonic()):
            return False
        deaths, _ = self.liveness.dead()
        packs = [self.submitted.get(k, []) for d in deaths for k in d.keys]
        mini_batches, causes, logs = self.job.stall_details(
            [i for pack in packs for i in pack if i not in self.records]
        )
        self.reason = self.liveness.reason(mini_batches, causes, logs)
        logger.warning("stopping the job: %s", self.reason)
        try:
            self.cancel()
        except Exception as exc:  # noqa: BLE001 - the cluster is failing already
            logger.warning("could not stop the job on every worker: %s", exc)
        return True

    def stop(self) -> None:
        """End a job that failed: none of its tasks may go on writing its output.

        Left running on a shared cluster, they would commit records (failures,
        with storage down) that the next run of the step would take as done.
        Removing the plugin waits until the mini-batches being scored have ended.
        """
        self.done.set()
        try:
            self.cancel()
            self.client.unregister_worker_plugin(self.job.plugin_name)
        except Exception as exc:  # noqa: BLE001 - the job is failing already
            logger.warning("could not stop the job on every worker: %s", exc)


class LiveRecords:
    """The records workers send as they commit them (``worker.feed``), counted
    in a thread of their own (a breach cancels the job, which blocks)."""

    def __init__(self, client: Any, topic: str, loop: ScoringLoop) -> None:
        self.client = client
        self.topic = topic
        self.loop = loop
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.client.subscribe_topic(self.topic, self._event)
        except Exception as exc:  # noqa: BLE001 - progress then moves per pack
            logger.debug("no live records: %s", exc)
            return
        self.thread = threading.Thread(
            target=self._run, daemon=True, name="daskscore-live-records"
        )
        self.thread.start()

    def _event(self, event: tuple[float, Any]) -> None:
        """On the client's event loop: only queue it."""
        self.queue.put(event[1])

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                self.take(batch)
            except Exception as exc:  # noqa: BLE001 - the task's return counts
                logger.debug("cannot count live records: %s", exc)

    def take(self, summaries: list[dict[str, Any]]) -> None:
        loop = self.loop
        with loop._lock:
            breach = loop._count(summaries, live=True)
            loop.board.publish(
                loop.client, loop.progress, JobStatus.RUNNING, loop.reason
            )
        if breach and _stop_for(loop, breach):
            loop.cancel()

    def stop(self) -> None:
        if self.thread is None:
            return
        try:
            self.client.unsubscribe_topic(self.topic)
            self.client.run_on_scheduler(drop_topic, self.topic)
        except Exception as exc:  # noqa: BLE001 - the scheduler is going away
            logger.debug("cannot drop the live records' topic: %s", exc)
        self.queue.put(None)
        self.thread.join()
        self.thread = None


def _maybe_progress_line(p: JobProgress, lines: list[str]) -> None:
    every = max(1, math.ceil(p.total_mini_batches / _PROGRESS_LINES))
    done = p.done_mini_batches
    if done % every == 0 or done == p.total_mini_batches:
        lines.append(p.line())


def _stop_for(loop: ScoringLoop, breach: str) -> bool:
    """Take ``breach`` as the reason to stop, unless there is one already."""
    with loop._lock:
        if loop.reason:
            return False
        loop.reason = breach
    logger.warning("stopping the job: %s", breach)
    return True


def _frames(todo: Any) -> list[MiniBatchSpec]:
    """The dask DataFrame partitions among the mini-batches to score."""
    if hasattr(todo, "frames"):
        return todo.frames()
    return [s for s in todo if s.kind == "frame"]


def _scheduler_address(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:  # noqa: BLE001 - the client is closed
        return "its address"


def _scheduler_gone(client: Any) -> bool:
    """Whether the client lost its scheduler (its futures were cancelled)."""
    return getattr(client, "status", "running") not in ("running",)


def _fetched_records(
    future: Any, pack: list[MiniBatchSpec]
) -> list[dict[str, Any]] | None:
    """A finished pack's records, or None when the scheduler went away before
    they were fetched: they are committed, and are read from the output folder
    when the job is collected. A pack Dask cancelled on its own gives no
    records (it is scored again), but the dask DataFrame partitions it carried
    are gone with it: those fail as lost with their worker."""
    try:
        return future.result()
    except (
        OSError, asyncio.CancelledError, concurrent.futures.CancelledError
    ) as exc:
        if not _result_lost(future, exc):
            # Dask dropped a pack whose result died with its worker before it
            # was fetched: what it committed stays, the rest is scored again
            logger.info("pack %s was cancelled by Dask (%s); its mini-batches "
                        "not committed go back into the queue", future.key, exc)
            gone = RuntimeError("its result was lost with its worker")
            return [lost_with_worker(s, gone) for s in pack if s.kind == "frame"]
        logger.debug("cannot fetch %s: %s", future.key, exc)
        return None


def _lost_connection(future: Any) -> bool:
    """Whether Dask cancelled ``future`` because the scheduler went away."""
    exc = getattr(getattr(future, "_state", None), "exception", None)
    return getattr(exc, "reason", None) == "scheduler-connection-lost"


def _result_lost(future: Any, exc: BaseException) -> bool:
    """Whether fetching a finished task's result failed because the client lost
    the scheduler: the connection broke (the scheduler holds the results), or
    Dask cancelled the future for it meanwhile."""
    if isinstance(exc, OSError):  # CommClosedError, a refused connection
        return True
    return _lost_connection(future) or (
        getattr(exc, "reason", None) == "scheduler-connection-lost"
    )


def _poll_init(loop: ScoringLoop) -> None:
    """Put on the progress line how many workers still run ``init()``, and for
    how long: asked of the workers while no mini-batch completes."""
    p = loop.progress
    done = p.done_mini_batches
    if done != loop._done_seen and not p.init_workers:
        loop._done_seen = done  # moving: nothing to explain
        return
    loop._done_seen = done
    try:
        running = loop.client.run(
            init_running,
            loop.job.plugin_name,
            workers=loop.job.workers,
            on_error="ignore",
        )
    except Exception:  # noqa: BLE001 - only a hint on the progress line
        return
    if loop.done.is_set() or p.done_mini_batches != done:
        return  # a record came in meanwhile: the answer is stale
    times = [t for t in running.values() if isinstance(t, int | float)]
    shown = p.init_workers
    p.init_workers, p.init_seconds = len(times), max(times, default=0.0)
    if times or shown:
        with loop._lock:  # not while a record is being counted
            loop.progress_cb.update(p)


def _requeue_unrunnable(self: ScoringLoop) -> None:
    """Packs left ``no-worker`` after their workers died go to new workers.

    A worker that replaced a dead one takes the job's resource after it
    joined, and Dask looks for tasks a worker can run only when it joins:
    such tasks are submitted again (a mini-batch already recorded is not
    scored twice: the task returns its record).
    """
    if not (self.placement and self.liveness.died and self.liveness.live):
        return
    with self._lock:
        waiting = {
            f.key: f
            for f in list(self.futures)
            if not f.done() and f.key in self.pending and not self.reason
        }
    if not waiting:
        return
    try:
        states = self.client.sync(
            self.client.scheduler.get_task_status, keys=list(waiting)
        )
    except Exception as exc:  # noqa: BLE001 - the scheduler is going away
        logger.debug("cannot ask the scheduler for the job's tasks: %s", exc)
        return
    for key, future in waiting.items():
        with self._lock:  # the main loop pops and submits packs too
            if states.get(key) != "no-worker" or self.reason:
                continue
            pack = self.pending.pop(key, None)
            if pack is None:  # it ended meanwhile
                continue
            future.cancel()
            resubmitted = self.submit_pack(pack, suffix=f"-w{self.serial}")
            self.stream.add(resubmitted)
