"""Jobs whose client is gone: found on the scheduler, so the next job can end them.

A job's runners live as long as its WorkerPlugin; a client killed mid-job never
removes it. Each new job asks the scheduler for such jobs and removes them.
"""

from __future__ import annotations

from .._protocol import JobStatus, orchestrator_key
from .dashboard import jobs_state

__all__ = ["stale_jobs"]


def stale_jobs(dask_scheduler=None) -> list[str]:
    """Runs on the scheduler: running jobs whose client is no longer connected.

    A submitted job whose orchestrator task is still to run (Dask runs it again
    after its worker, and the client on it, died) is not stale: it resumes.
    """
    out = []
    for job_id, state in jobs_state(dask_scheduler).items():
        owner = state.get("client_id") if isinstance(state, dict) else None
        orchestrator = dask_scheduler.tasks.get(orchestrator_key(job_id))
        if (
            state.get("status") == JobStatus.RUNNING
            and owner
            and (owner not in dask_scheduler.clients)
            and (orchestrator is None or orchestrator.state in ("erred", "memory"))
        ):
            out.append(job_id)
    return out
