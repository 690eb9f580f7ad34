"""Live job state on the Dask dashboard.

Each running job publishes a small state dict into the scheduler's metadata store
(``client.set_metadata(["daskscore", "jobs", job_id], state)``); each of its
workers sends what it is doing with its heartbeat (``worker.activity``). This
module joins the two (:func:`job_views`) and adds routes to the scheduler's
dashboard web server that serve them:

- ``/daskscore/api/jobs`` (JSON: every job) and ``/daskscore/api/jobs/<job_id>``
- ``/daskscore/`` (the job page of :mod:`.page`, a tab in the dashboard's
  navigation, which polls the JSON route every second)
- ``daskscore_*`` series on the scheduler's ``/metrics`` (:mod:`.metrics`), when
  ``prometheus_client`` is installed.

A finished job is forgotten at its ``forget_at`` (``daskscore.dashboard-forget-
after`` on its client). The routes are installed from the client with
``client.run_on_scheduler``, so any scheduler with daskscore installed gets them;
no scheduler preload is needed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import time
from typing import Any

from distributed.core import Status

from .._protocol import JOBS_KEY, plugin_name, worker_metric_key
from .metrics import register_metrics
from .page import PAGE

logger = logging.getLogger("daskscore")

__all__ = [
    "attach_dask_pages",
    "install_routes",
    "job_view",
    "job_view_of",
    "job_views",
    "jobs_state",
]

METADATA_KEY = list(JOBS_KEY)


def jobs_state(dask_scheduler: Any) -> dict[str, Any]:
    """Every published job state, by job id (runs on the scheduler)."""
    try:
        return dict(dask_scheduler.get_metadata(METADATA_KEY, default={}) or {})
    except (KeyError, TypeError):
        return {}


# a worker scoring one mini-batch for this share of run_invocation_timeout is
# shown as near it (highlighted on the page, flagged by daskscore status)
NEAR_TIMEOUT = 0.8


def _workers(
    dask_scheduler: Any, job_id: str, now: float, limit: float
) -> list[dict[str, Any]]:
    key = worker_metric_key(plugin_name(job_id))
    out = []
    for address, ws in list(dask_scheduler.workers.items()):
        activity = (getattr(ws, "metrics", None) or {}).get(key)
        if not isinstance(activity, dict):
            continue
        row = {**activity, "address": address}
        # measured on the worker at its last heartbeat: add the time since then
        late = max(0.0, now - float(getattr(ws, "last_seen", now) or now))
        if "seconds" in row:
            row["seconds"] = round(row["seconds"] + late, 3)
        row["near_timeout"] = bool(
            limit and "seconds" in row and row["seconds"] >= NEAR_TIMEOUT * limit
        )
        alive = max(1e-6, float(row.get("alive_seconds") or 0.0) + late)
        row["items_per_second"] = round(row.get("items", 0) / alive, 3)
        out.append(row)
    return sorted(out, key=lambda w: w.get("name") or w["address"])


def job_view(dask_scheduler: Any, job_id: str) -> dict[str, Any] | None:
    """One job's published state with its workers' (runs on the scheduler)."""
    state = _forget_expired(dask_scheduler).get(job_id)
    if not isinstance(state, dict):
        return None
    view = dict(state)
    limit = float((state.get("settings") or {}).get("run_invocation_timeout") or 0)
    view["workers"] = _workers(dask_scheduler, job_id, time.time(), limit)
    view["running_mini_batches"] = sum(
        1 for w in view["workers"] if w.get("state") == "scoring"
    )
    return view


def job_view_of(job_id: str, dask_scheduler: Any = None) -> dict[str, Any] | None:
    """:func:`job_view` for ``client.run_on_scheduler(job_view_of, job_id)``."""
    return job_view(dask_scheduler, job_id)


def job_views(dask_scheduler: Any) -> dict[str, Any]:
    """Every job on the scheduler, with its workers."""
    views = {}
    for job_id in _forget_expired(dask_scheduler):
        view = job_view(dask_scheduler, job_id)
        if view is not None:
            views[job_id] = view
    return views


def _forget_expired(dask_scheduler: Any) -> dict[str, Any]:
    """Drop the finished jobs past their ``forget_at``; the others' states."""
    now = time.time()
    states = jobs_state(dask_scheduler)
    for job_id, state in list(states.items()):
        forget_at = state.get("forget_at") if isinstance(state, dict) else None
        if forget_at is not None and forget_at < now:
            dask_scheduler.task_metadata.get("daskscore", {}).get("jobs", {}).pop(
                job_id, None
            )
            del states[job_id]
    return states


def install_routes(dask_scheduler: Any = None) -> bool:
    """Add the daskscore routes to a scheduler's web server (idempotent)."""
    from tornado import web

    app = getattr(dask_scheduler, "http_application", None)
    if app is None:
        return False
    if getattr(dask_scheduler, "_daskscore_routes", False):
        return True

    class JobsAPI(web.RequestHandler):
        def get(self, job_id: str | None = None) -> None:
            jobs = job_views(dask_scheduler)
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            if job_id:
                if job_id not in jobs:
                    self.set_status(404)
                    self.write(json.dumps({"error": f"no job {job_id}"}))
                    return
                self.write(json.dumps(jobs[job_id], default=str))
            else:
                self.write(json.dumps(jobs, default=str))

    class JobsPage(web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.write(PAGE)

    app.add_handlers(
        r".*",
        [
            (r"/daskscore/api/jobs/?", JobsAPI),
            (r"/daskscore/api/jobs/([^/]+)", JobsAPI),
            (r"/daskscore/", JobsPage),
            (r"/daskscore", web.RedirectHandler, {"url": "daskscore/"}),
        ],
    )
    _add_tab(dask_scheduler)
    register_metrics(dask_scheduler, job_views)
    dask_scheduler._daskscore_routes = True
    return True


def _add_tab(dask_scheduler: Any) -> None:
    """A "Daskscore" tab next to Dask's own pages (its Bokeh pages' template).

    Only where those pages are loaded: a scheduler without Bokeh has none, and
    an embedded one gets them later (:func:`attach_dask_pages`, which adds the
    tab then).
    """
    pages_module = sys.modules.get("distributed.dashboard.scheduler")
    if pages_module is None:
        return
    pages = pages_module.template_variables(dask_scheduler)["pages"]
    if "daskscore" not in pages:
        pages.append("daskscore")


def attach_dask_pages(dask_scheduler: Any, prefix: str = "/") -> Any:
    """Dask's own Bokeh pages on a scheduler started without them, loaded on
    the first visit.

    The embedded cluster's scheduler starts with ``dashboard=False`` (its HTTP
    server, the daskscore routes and ``/metrics`` are there at once): importing
    Bokeh and Dask's pages costs ~1 s of CPU, which a job would pay whether or
    not anyone looks. Instead, the first request for a page the scheduler does
    not serve (``/status``, ``/workers``, ``/``...) imports them in a thread,
    connects them on the scheduler's event loop, with the "Daskscore" tab, and
    redirects to the page asked for, which Dask then serves. Returns the
    stand-in application (removed from the scheduler's once the pages are in).
    """
    from tornado import web

    app = dask_scheduler.http_application
    loaded: list[Any] = []  # the one load, shared by the requests that wait

    def connect() -> None:
        pages_module = sys.modules["distributed.dashboard.scheduler"]
        pages_module.connect(
            app, dask_scheduler.http_server, dask_scheduler, prefix=prefix
        )
        if getattr(dask_scheduler, "_daskscore_routes", False):
            _add_tab(dask_scheduler)
        if standin in app.applications:
            app.applications.remove(standin)

    async def load() -> tuple[int, str]:
        """``(0, "")`` once Dask's pages are in, else an HTTP status and why."""
        try:  # Bokeh's pages, in a thread: the scheduler goes on meanwhile
            await asyncio.to_thread(
                importlib.import_module, "distributed.dashboard.scheduler"
            )
        except ImportError:  # no Bokeh: the scheduler has no Dask pages
            return 404, "this scheduler has no Dask pages (Bokeh is not installed)"
        if dask_scheduler.status != Status.running:
            return 503, "this scheduler is closing"
        try:
            connect()
        except Exception as exc:  # noqa: BLE001 - the daskscore page stays
            logger.warning("cannot connect Dask's dashboard pages: %s", exc)
            why = f"{type(exc).__name__}: {exc}"
            return 503, f"Dask's pages could not be loaded ({why})"
        return 0, ""

    class FirstVisit(web.RequestHandler):
        async def get(self, *_args: Any) -> None:
            if not loaded:
                loaded.append(asyncio.ensure_future(load()))
            status, problem = await loaded[0]
            if not status:
                self.redirect(self.request.uri)
            else:
                self.set_status(status)
                self.write(problem)

    standin = web.Application([(r"/.*", FirstVisit)])
    app.add_application(standin)
    return standin
