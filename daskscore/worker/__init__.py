"""The Dask worker's side: the plugin that holds a runner, and the scoring tasks.

- :mod:`.plugin`: :class:`~.plugin.ScoringPlugin`, the WorkerPlugin of one job;
- :mod:`.handle`: :class:`~.handle.RunnerHandle`, one runner process seen from
  the worker (start, timeouts, restarts);
- :mod:`.tasks`: the Dask tasks that score a pack of mini-batches, with retries.
"""
