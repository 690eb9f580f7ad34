"""Jobs whose client is gone: found on the scheduler, so the next job can end them.

A job's runners live as long as its WorkerPlugin; a client killed mid-job never
removes it. Each new job asks the scheduler for such jobs and removes them.
"""

from __future__ import annotations

from .._protocol import JobStatus, orchestrator_key
from .dashboard import jobs_state

__all__ = ["drop_topic", "stale_jobs"]


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


def drop_topic(topic: str, dask_scheduler=None) -> None:
    """Runs on the scheduler: forget the events of an ended job's topic.

    The scheduler keeps every event it relays (``distributed.admin.
    low-level-log-length`` per topic); a long-lived cluster would hold the live
    records of every job it ran.
    """
    broker = getattr(dask_scheduler, "_broker", None)
    topics = getattr(broker, "_topics", None)
    if topics is not None:
        topics.pop(topic, None)
