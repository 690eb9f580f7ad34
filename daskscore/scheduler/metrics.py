"""daskscore's series on the scheduler's Prometheus ``/metrics``, next to Dask's.

A custom collector (``prometheus_client``, the extra ``daskscore[prometheus]``)
reads the jobs' state at each scrape, as Dask's own collectors read the
scheduler's: nothing is counted twice and nothing runs between scrapes.

- ``daskscore_mini_batches_total{job,status}``: committed mini-batches,
  ``status`` ``succeeded`` or ``failed`` (their sum is the report's
  ``processed_mini_batches``);
- ``daskscore_items_total{job,outcome}``: items, ``succeeded`` or ``failed``;
- ``daskscore_tries_total{job,status}``: tries by ``TryStatus``;
- ``daskscore_run_seconds{job}``: histogram of the tries' ``run()`` seconds;
- ``daskscore_workers{job,state}``: the job's workers by state (``starting``,
  ``init``, ``idle``, ``scoring``, ``restarting``);
- ``daskscore_jobs{status}``: the jobs the scheduler knows, by status.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["WORKER_STATES", "DaskscoreCollector", "register_metrics"]

WORKER_STATES = ("starting", "init", "idle", "scoring", "restarting")
JOB_STATUSES = ("Submitted", "Running", "Completed", "Failed")

_schedulers: weakref.WeakSet[Any] = weakref.WeakSet()
_collector: list[Any] = []  # the one collector of this process, once registered


class DaskscoreCollector:
    """Yields the ``daskscore_*`` families of every scheduler in this process."""

    def __init__(self, views: Callable[[Any], dict[str, Any]]) -> None:
        self.views = views

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        mbs = CounterMetricFamily(
            "daskscore_mini_batches",
            "Committed mini-batches.",
            labels=["job", "status"],
        )
        items = CounterMetricFamily(
            "daskscore_items", "Scored items by outcome.", labels=["job", "outcome"]
        )
        tries = CounterMetricFamily(
            "daskscore_tries",
            "Tries of mini-batches by status.",
            labels=["job", "status"],
        )
        runs = HistogramMetricFamily(
            "daskscore_run_seconds", "Seconds run() took, per try.", labels=["job"]
        )
        workers = GaugeMetricFamily(
            "daskscore_workers", "The job's workers by state.", labels=["job", "state"]
        )
        jobs = GaugeMetricFamily(
            "daskscore_jobs", "Jobs on the scheduler by status.", labels=["status"]
        )
        statuses: Counter[str] = Counter()
        for scheduler in list(_schedulers):
            for job_id, view in self.views(scheduler).items():
                statuses[str(view.get("status"))] += 1
                _add_job(job_id, view, mbs, items, tries, runs, workers)
        for status in sorted(set(JOB_STATUSES) | set(statuses)):
            jobs.add_metric([status], statuses[status])
        yield from (mbs, items, tries, runs, workers, jobs)


def _add_job(job_id, view, mbs, items, tries, runs, workers) -> None:
    failed = int(view.get("failed_mini_batches") or 0)
    done = int(view.get("done_mini_batches") or 0)
    mbs.add_metric([job_id, "succeeded"], done - failed)
    mbs.add_metric([job_id, "failed"], failed)
    items.add_metric([job_id, "succeeded"], int(view.get("succeeded_items") or 0))
    items.add_metric([job_id, "failed"], int(view.get("failed_items") or 0))
    for status, n in sorted((view.get("tries") or {}).items()):
        tries.add_metric([job_id, status], n)
    hist = view.get("run_seconds") or {}
    bounds, counts = hist.get("buckets") or [], hist.get("counts") or []
    if counts:
        cumulative, buckets = 0, []
        for bound, n in zip([*bounds, float("inf")], counts):
            cumulative += n
            label = "+Inf" if bound == float("inf") else repr(float(bound))
            buckets.append((label, cumulative))
        runs.add_metric([job_id], buckets, float(hist.get("sum") or 0.0))
    states = Counter(w.get("state") for w in view.get("workers") or [])
    for state in WORKER_STATES:
        workers.add_metric([job_id, state], states[state])


def register_metrics(
    dask_scheduler: Any, views: Callable[[Any], dict[str, Any]]
) -> bool:
    """Add ``dask_scheduler``'s jobs to ``/metrics``; False without prometheus."""
    try:
        import prometheus_client
    except ImportError:
        return False
    _schedulers.add(dask_scheduler)
    if not _collector:
        collector = DaskscoreCollector(views)
        prometheus_client.REGISTRY.register(collector)
        _collector.append(collector)
    return True
