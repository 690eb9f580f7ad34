"""Fire-and-forget jobs: submit to a cluster, detach, reattach by job id.

``submit_job`` ships the step (with its script bundled here) to the cluster as one
long-running orchestrator task and returns at once; the orchestrator runs the
same :class:`~daskscore.engine.job.Job` as ``step.run()`` would, from a worker, with a
client of its own, so the job goes on after the submitting process exits. Its
state lives in the scheduler's metadata (``["daskscore", "jobs", job_id]``), which
``job_status`` and ``wait_job`` read and ``cancel_job`` writes to. If the worker
running the orchestrator dies, Dask runs it again elsewhere and it resumes from
the committed mini-batches.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import dask.config
from distributed import fire_and_forget, worker_client

from .. import _settings
from .._protocol import (
    FINAL_JOB_STATUSES,
    JobStatus,
    cancel_key,
    job_key,
    orchestrator_key,
)
from ..entry_script import bundle_entry_script
from ..errors import JobError
from ..progress import ProgressCallback
from ..scheduler.dashboard import job_view_of
from .job import Job

__all__ = [
    "cancel_job",
    "cancel_job_request",
    "job_status",
    "job_view",
    "orchestrator_key",
    "submit_job",
    "wait_job",
]


def _orchestrate(
    step: Any,
    bundle: Any,
    job_id: str,
    settings: dict[str, Any] | None = None,
    wait_for_lock: bool = False,
) -> str:
    """The orchestrator task: run the job from a worker.

    ``settings`` are the submitting client's ``daskscore.*`` settings
    (:func:`daskscore._settings.snapshot`): the job reads them, not the worker's.
    """
    with (
        dask.config.set(settings or {}),
        worker_client(separate_thread=True) as client,
    ):
        try:
            result = Job(
                step,
                client,
                ProgressCallback(),
                job_id=job_id,
                bundle=bundle,
                wait_for_lock=wait_for_lock,
            ).run()
        except Exception as exc:
            client.set_metadata([*job_key(job_id), "status"], JobStatus.FAILED)
            client.set_metadata(
                [*job_key(job_id), "reason"], f"{type(exc).__name__}: {exc}"
            )
            raise
    return result.status


def submit_job(step: Any, client: Any, wait_for_lock: bool = False) -> str:
    """Start ``step`` on the cluster of ``client`` and return its job id at once.

    The job takes its output folder's lock when it starts on the cluster; with
    another job holding it, it fails (its status says why) or, with
    ``wait_for_lock``, waits for it.
    """
    cfg = step.config
    bundle = bundle_entry_script(cfg.entry_script, cfg.source_directory)
    job_id = f"{step.name}-{uuid.uuid4().hex[:8]}"
    client.set_metadata(
        job_key(job_id),
        {
            "job_id": job_id,
            "step": step.name,
            "status": JobStatus.SUBMITTED,
            "mini_batches": 0,
            "done_mini_batches": 0,
            "failed_mini_batches": 0,
            "remaining_mini_batches": 0,
            "succeeded_items": 0,
            "failed_items": 0,
            "items_per_second": 0.0,
            "eta_seconds": None,
            "started_at": time.time(),
            "updated_at": time.time(),
            "output_dir": step.output,
            "reason": "",
        },
    )
    future = client.submit(
        _orchestrate,
        step,
        bundle,
        job_id,
        _settings.snapshot(),
        wait_for_lock,
        key=orchestrator_key(job_id),
        pure=False,
    )
    fire_and_forget(future)
    return job_id


def job_status(client: Any, job_id: str) -> dict[str, Any]:
    """The latest published state of a job."""
    state = client.get_metadata(job_key(job_id), default=None)
    if state is None:
        raise JobError(
            f"no job {job_id!r} on the scheduler at "
            f"{client.scheduler.address}; check the id (daskscore submit "
            "printed it) and the --scheduler address"
        )
    return dict(state)


def job_view(client: Any, job_id: str) -> dict[str, Any]:
    """The job's state with its workers': what ``/daskscore/api/jobs/ID`` serves."""
    view = client.run_on_scheduler(job_view_of, job_id)
    if view is None:
        return job_status(client, job_id)  # raises the usual "no job" error
    return dict(view)


def wait_job(
    client: Any, job_id: str, poll_s: float = 1.0, on_update: Any = None
) -> dict[str, Any]:
    """Block until the job is Completed or Failed; return its final state."""
    while True:
        state = job_status(client, job_id)
        if on_update is not None:
            on_update(state)
        if state.get("status") in FINAL_JOB_STATUSES:
            return state
        time.sleep(poll_s)


def cancel_job(client: Any, job_id: str) -> None:
    """Ask a running job to stop; committed mini-batches are kept."""
    job_status(client, job_id)  # a clear error for an unknown id
    cancel_job_request(client, job_id)


def cancel_job_request(client: Any, job_id: str) -> None:
    """Ask a running job (on any client) to stop, through the scheduler."""
    client.set_metadata(cancel_key(job_id), True)


def state_line(state: dict[str, Any]) -> str:
    """One human-readable line for a job state."""
    eta = state.get("eta_seconds")
    line = (
        f"{state['job_id']}: {state['status']}, "
        f"{state.get('done_mini_batches', 0)}/{state.get('mini_batches', 0)} "
        f"mini-batches ({state.get('failed_mini_batches', 0)} failed), "
        f"{state.get('succeeded_items', 0)} items succeeded, "
        f"{state.get('failed_items', 0)} failed, "
        f"{state.get('items_per_second', 0.0):.1f} items/s"
    )
    if eta is not None:
        line += f", ETA {eta:.0f}s"
    if state.get("reason"):
        line += f"; {state['reason']}"
    return line
