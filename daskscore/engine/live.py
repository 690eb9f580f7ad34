"""A running job as the scheduler sees it: published state, cancel requests, reaping.

Each job publishes a small state dict at ``["daskscore", "jobs", job_id]`` in the
scheduler's metadata (the dashboard routes and ``daskscore status`` read it), polls
``["daskscore", "cancel", job_id]`` for ``daskscore cancel``, and removes the
plugins of jobs whose client died before it starts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .._protocol import JobStatus, cancel_key, job_key, plugin_name
from ..progress import JobProgress, dashboard_page_link
from ..scheduler.dashboard import install_routes
from ..scheduler.reaping import stale_jobs

__all__ = ["JobBoard", "install_dashboard", "reap_stale_jobs"]

logger = logging.getLogger("daskscore")


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

    def state(
        self,
        progress: JobProgress,
        status: str,
        reason: str = "",
        output_file: str | None = None,
    ) -> dict[str, Any]:
        p = progress
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
