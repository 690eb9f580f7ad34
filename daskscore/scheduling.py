"""Where mini-batches run and in what pieces, and jobs as the scheduler sees them.

Plain functions, most of them run on the scheduler or the workers through
``client.run`` / ``run_on_scheduler``: choosing workers for ``node_count`` and
``process_count_per_node``, cutting mini-batches into packs (Dask tasks),
telling a job's plugin to stop, and finding jobs whose client is gone.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "cancel_job_request",
    "node_of",
    "pack_mini_batches",
    "select_workers",
    "stale_jobs",
]

# at most this many mini-batches per Dask task
_MAX_PACK = 64


def _cancel_plugin(plugin_name: str, dask_worker=None) -> bool:
    """Runs on every worker (``client.run``): stop starting new mini-batches."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker else None
    if plugin is not None:
        plugin.cancelled = True
    return plugin is not None


def _plugin_problem(plugin_name: str, dask_worker=None):
    """Runs on every worker: the import problem of the entry script, if any."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker else None
    return getattr(plugin, "import_problem", None)


def stale_jobs(dask_scheduler=None) -> list[str]:
    """Runs on the scheduler: running jobs whose client is no longer connected.

    A submitted job whose orchestrator task is still to run (Dask runs it again
    after its worker, and the client on it, died) is not stale: it resumes.
    """
    from .dashboard import jobs_state
    from .remote import orchestrator_key

    out = []
    for job_id, state in jobs_state(dask_scheduler).items():
        owner = state.get("client_id") if isinstance(state, dict) else None
        orchestrator = dask_scheduler.tasks.get(orchestrator_key(job_id))
        if (
            state.get("status") == "Running"
            and owner
            and (owner not in dask_scheduler.clients)
            and (orchestrator is None or orchestrator.state in ("erred", "memory"))
        ):
            out.append(job_id)
    return out


def cancel_job_request(client: Any, job_id: str) -> None:
    """Ask a running job (on any client) to stop, through the scheduler."""
    client.set_metadata(["daskscore", "cancel", job_id], True)


def node_of(address: str, info: dict[str, Any]) -> str:
    """The node a worker belongs to.

    ``dask worker --name NODE --nworkers N`` names its workers ``NODE-0`` ..
    ``NODE-<N-1>`` (and ``NODE`` when N is 1): those form node NODE, even when
    several nodes share a host (as in tests on one machine). Workers without a
    name of their own (named by their address) belong to their host.
    """
    name = str(info.get("name", ""))
    host = str(info.get("host") or address.split("://")[-1].rsplit(":", 1)[0])
    if not name or "://" in name or name == address or name.startswith(host + ":"):
        return host
    prefix, sep, tail = name.rpartition("-")
    if sep and tail.isdigit() and prefix:
        return prefix
    return name


def select_workers(
    workers: dict[str, dict[str, Any]],
    node_count: int,
    process_count_per_node: int | None,
) -> list[str]:
    """At most ``node_count`` nodes and ``process_count_per_node`` workers on each."""
    nodes: dict[str, list[str]] = {}
    for address in sorted(workers):
        nodes.setdefault(node_of(address, workers[address]), []).append(address)
    chosen: list[str] = []
    for node in sorted(nodes)[:node_count]:
        members = nodes[node]
        chosen.extend(
            members[:process_count_per_node] if process_count_per_node else members
        )
    return chosen


def pack_mini_batches(todo: list, workers: int) -> list[list]:
    """Split the mini-batches into packs, one Dask task each, in input order.

    Guided self-scheduling: each pack holds a quarter of what every worker would
    still get (at most ``_MAX_PACK``), so packs shrink as the queue drains. Big
    packs early keep the scheduler's work small and let the runner prefetch
    within a pack; single mini-batches at the end keep every worker busy until
    the last one is done instead of one worker finishing a big pack alone.
    """
    packs: list[list] = []
    start, workers = 0, max(1, workers)
    while start < len(todo):
        left = len(todo) - start
        size = max(1, min(_MAX_PACK, left // (workers * 4)))
        packs.append(todo[start : start + size])
        start += size
    return packs
