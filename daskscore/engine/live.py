"""A running job as the scheduler sees it: published state, cancel requests, reaping.

Each job publishes a small state dict at ``["daskscore", "jobs", job_id]`` in the
scheduler's metadata (the dashboard routes and ``daskscore status`` read it), polls
``["daskscore", "cancel", job_id]`` for ``daskscore cancel``, and removes the
plugins of jobs whose client died before it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from typing import Any

from .._protocol import JobStatus, cancel_key, job_key, plugin_name
from ..progress import JobProgress, dashboard_page_link
from ..scheduler.dashboard import install_routes
from ..scheduler.reaping import stale_jobs
from ..storage import redact

__all__ = ["RUN_SECONDS_BUCKETS", "JobBoard", "install_dashboard", "reap_stale_jobs"]

logger = logging.getLogger("daskscore")

# upper bounds of the run() seconds histogram (Prometheus: daskscore_run_seconds)
RUN_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
_FAILURES_KEPT = 20  # the latest failed tries shown
_HISTORY_POINTS = 240  # throughput samples kept (thinned out as the job goes on)


def job_settings(step: Any) -> dict[str, Any]:
    """What the dashboard shows of a step's settings, secrets masked."""
    cfg = step.config
    options = getattr(step, "storage_options", None)
    inputs = [str(getattr(d, "path", None) or d) for d in getattr(step, "inputs", [])]
    return {
        "script": str(getattr(cfg, "entry_script", "")),
        "inputs": [redact(i, options) for i in inputs],
        "mini_batch_size": str(getattr(cfg, "mini_batch_size", "")),
        "run_invocation_timeout": getattr(cfg, "run_invocation_timeout", None),
        "run_max_try": getattr(cfg, "run_max_try", None),
        "output": redact(str(getattr(step, "output", "")), options),
    }


def threshold_state(cfg: Any, p: JobProgress) -> list[dict[str, Any]]:
    """Each failure threshold that is on: its limit and the current value."""
    out = []
    if getattr(cfg, "error_threshold", None) not in (None, -1):
        out.append(
            {
                "name": "error_threshold",
                "limit": cfg.error_threshold,
                "value": p.failed_items,
            }
        )
    if getattr(cfg, "allowed_failed_count", None) not in (None, -1):
        out.append(
            {
                "name": "allowed_failed_count",
                "limit": cfg.allowed_failed_count,
                "value": p.failed_mini_batches,
            }
        )
    if getattr(cfg, "allowed_failed_percent", None) is not None:
        percent = 100.0 * p.failed_mini_batches / max(1, p.total_mini_batches)
        out.append(
            {
                "name": "allowed_failed_percent",
                "limit": cfg.allowed_failed_percent,
                "value": round(percent, 2),
            }
        )
    return out


class JobStats:
    """What the dashboard and /metrics show beyond the counts: tries by status,
    the run() seconds histogram, the latest failed tries, throughput samples.

    Counted by the job's threads (live records, finished packs) and read by its
    publishing ones: each method holds a small lock of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tries: Counter[str] = Counter()
        self.run_buckets = [0] * (len(RUN_SECONDS_BUCKETS) + 1)
        self.run_sum = 0.0
        self.failures: deque[dict[str, Any]] = deque(maxlen=_FAILURES_KEPT)
        self.history: list[list[float]] = []

    def count(self, record: dict[str, Any]) -> None:
        """A new mini-batch record (a live summary or the full record)."""
        with self._lock:
            for t in record.get("tries") or []:
                self._count_try(record["index"], t)

    def _count_try(self, index: int, t: dict[str, Any]) -> None:
        status = str(t.get("status") or "")
        self.tries[status] += 1
        seconds = float(t.get("run_seconds") or 0.0)
        self.run_sum += seconds
        slot = next(
            (i for i, b in enumerate(RUN_SECONDS_BUCKETS) if seconds <= b),
            len(RUN_SECONDS_BUCKETS),
        )
        self.run_buckets[slot] += 1
        if status != "RUN_DONE":
            self.failures.append(_failure(index, t))

    def sample(self, p: JobProgress) -> None:
        """One throughput sample: at most one a second, thinned when full."""
        now = time.time()
        with self._lock:
            if self.history and now - self.history[-1][0] < 1.0:
                return
            items = p.succeeded_items + p.failed_items
            self.history.append([round(now, 3), p.done_mini_batches, items])
            if len(self.history) > _HISTORY_POINTS:
                self.history = self.history[::2] + (
                    [] if len(self.history) % 2 else [self.history[-1]]
                )

    def state(self) -> dict[str, Any]:
        with self._lock:
            return self._state()

    def _state(self) -> dict[str, Any]:
        return {
            "tries": dict(self.tries),
            "run_seconds": {
                "buckets": list(RUN_SECONDS_BUCKETS),
                "counts": list(self.run_buckets),
                "sum": round(self.run_sum, 6),
            },
            "failures": list(self.failures),
            "history": list(self.history),
        }


def _failure(index: int, t: dict[str, Any]) -> dict[str, Any]:
    error = str(t.get("error") or "")
    try_no = t.get("try")
    return {
        "mini_batch": index,
        "try": try_no,
        "status": str(t.get("status") or ""),
        "error": error.splitlines()[0][:300] if error else "",
        "worker": t.get("worker") or "",
        "traceback": f"logs/user/error/mini-batch-{index:09d}.try{try_no}.txt",
    }


class JobBoard:
    """Publishes one job's state on the scheduler, at most every ``interval_s``."""

    def __init__(
        self, job_id: str, step_name: str, output_dir: str, interval_s: float = 0.5
    ) -> None:
        self.job_id = job_id
        self.interval_s = interval_s
        self.step_name = step_name
        self.output_dir = output_dir
        self.client_id: str | None = None
        self._last = 0.0
        self.settings: dict[str, Any] = {}
        self.cfg: Any = None
        self.stats = JobStats()
        self.forget_after: float | None = None

    def describe(self, step: Any, forget_after: float | None = None) -> None:
        """Show ``step``'s settings and thresholds; forget it after it ends."""
        self.settings = job_settings(step)
        self.cfg = step.config
        self.forget_after = forget_after

    def state(
        self,
        progress: JobProgress,
        status: str,
        reason: str = "",
        output_file: str | None = None,
    ) -> dict[str, Any]:
        p = progress
        self.stats.sample(p)
        final = status in (JobStatus.COMPLETED, JobStatus.FAILED)
        return {
            "job_id": self.job_id,
            "step": self.step_name,
            "status": status,
            "mini_batches": p.total_mini_batches,
            "done_mini_batches": p.done_mini_batches,
            "failed_mini_batches": p.failed_mini_batches,
            "remaining_mini_batches": p.total_mini_batches - p.done_mini_batches,
            "resumed_mini_batches": p.resumed_mini_batches,
            "total_items": p.total_items,
            "succeeded_items": p.succeeded_items,
            "failed_items": p.failed_items,
            "items_per_second": round(p.items_per_second, 3),
            "eta_seconds": None if status != JobStatus.RUNNING else p.eta_seconds,
            "started_at": time.time() - p.elapsed_seconds,
            "updated_at": time.time(),
            "output_dir": self.output_dir,
            "output_file": output_file,
            "reason": reason,
            "client_id": self.client_id,
            "elapsed_seconds": round(p.elapsed_seconds, 3),
            "settings": self.settings,
            "thresholds": [] if self.cfg is None else threshold_state(self.cfg, p),
            "forget_at": (
                time.time() + self.forget_after
                if final and self.forget_after is not None
                else None
            ),
            **self.stats.state(),
        }

    def publish(
        self,
        client: Any,
        progress: JobProgress,
        status: str,
        reason: str = "",
        output_file: str | None = None,
        force: bool = False,
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        try:
            client.set_metadata(
                job_key(self.job_id), self.state(progress, status, reason, output_file)
            )
        except Exception as exc:  # noqa: BLE001 - progress display only
            logger.debug("cannot publish job state: %s", exc)

    def cancel_requested(self, client: Any) -> bool | None:
        """Whether ``daskscore cancel`` asked this job to stop; None: no scheduler."""
        try:
            return bool(client.get_metadata(cancel_key(self.job_id), default=False))
        except Exception:  # noqa: BLE001 - the scheduler is going away
            return None


def reap_stale_jobs(client: Any) -> None:
    """Remove jobs whose client died (their runners would stay forever)."""
    try:
        stale = client.run_on_scheduler(stale_jobs)
    except Exception as exc:  # noqa: BLE001 - a scheduler without daskscore
        logger.debug("cannot look for stale jobs: %s", exc)
        return
    for job_id in stale:
        logger.info("removing job %s: its client is gone", job_id)
        try:
            client.unregister_worker_plugin(plugin_name(job_id))
        except Exception as exc:  # noqa: BLE001 - already gone
            logger.debug("%s: %s", job_id, exc)
        client.set_metadata([*job_key(job_id), "status"], JobStatus.FAILED)
        client.set_metadata(
            [*job_key(job_id), "reason"],
            "its client disconnected before the job ended",
        )


def install_dashboard(client: Any) -> None:
    """Add the daskscore routes to the scheduler's dashboard (once per scheduler)."""
    try:
        if client.run_on_scheduler(install_routes):
            link = dashboard_page_link(getattr(client, "dashboard_link", None))
            if link:
                logger.info("daskscore job page: %s", link)
    except Exception as exc:  # noqa: BLE001 - a scheduler without daskscore
        logger.debug("no daskscore dashboard route on the scheduler: %s", exc)
