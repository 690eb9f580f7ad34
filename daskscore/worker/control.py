"""Asked of every worker of a job (``client.run``): stop, report import problems,
say whether ``init()`` is still running."""

from __future__ import annotations

__all__ = ["cancel_plugin", "init_running", "plugin_problem"]


def cancel_plugin(plugin_name: str, dask_worker=None) -> bool:
    """Runs on every worker (``client.run``): stop starting new mini-batches."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker else None
    if plugin is not None:
        plugin.cancelled = True
    return plugin is not None


def plugin_problem(plugin_name: str, dask_worker=None):
    """Runs on every worker: the import problem of the entry script, if any."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker else None
    return getattr(plugin, "import_problem", None)


def init_running(plugin_name: str, dask_worker=None) -> float | None:
    """Runs on every worker: seconds ``init()`` has been running there, or None."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker else None
    if plugin is None or not hasattr(plugin, "initializing_for"):
        return None
    return plugin.initializing_for()
