"""Live job state on the Dask dashboard.

Each running job publishes a small state dict into the scheduler's metadata store
(``client.set_metadata(["daskscore", "jobs", job_id], state)``); this module adds
two routes to the scheduler's dashboard web server that serve it:

- ``/daskscore/api/jobs`` (JSON: every job) and ``/daskscore/api/jobs/<job_id>``
- ``/daskscore/`` (a small HTML page that refreshes itself every second)

The routes are installed from the client with ``client.run_on_scheduler``, so any
scheduler with daskscore installed gets them; no scheduler preload is needed.
"""

from __future__ import annotations

import json
from typing import Any

from .._protocol import JOBS_KEY

__all__ = ["install_routes", "jobs_state"]

METADATA_KEY = list(JOBS_KEY)

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>daskscore jobs</title>
<style>
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #eee; } td.l { text-align: left; }
</style></head>
<body><h1>daskscore jobs</h1>
<table id="jobs"><thead><tr>
<th>job</th><th>status</th><th>mini-batches done</th><th>failed</th><th>remaining</th>
<th>items succeeded</th><th>items failed</th><th>items/s</th><th>ETA s</th>
</tr></thead><tbody></tbody></table>
<p id="updated"></p>
<script>
async function refresh() {
  try {
    const r = await fetch("api/jobs");
    const jobs = await r.json();
    const rows = Object.values(jobs).sort((a, b) => a.started_at - b.started_at);
    document.querySelector("#jobs tbody").innerHTML = rows.map(j =>
      `<tr id="job-${j.job_id}"><td class="l">${j.job_id}</td>` +
      `<td class="l status">${j.status}</td>` +
      `<td class="done">${j.done_mini_batches}/${j.mini_batches}</td>` +
      `<td class="failed-mb">${j.failed_mini_batches}</td>` +
      `<td class="remaining">${j.remaining_mini_batches}</td>` +
      `<td class="succeeded">${j.succeeded_items}</td>` +
      `<td class="failed-items">${j.failed_items}</td>` +
      `<td>${j.items_per_second.toFixed(1)}</td>` +
      `<td>${j.eta_seconds === null ? "" : j.eta_seconds.toFixed(0)}</td></tr>`
    ).join("");
    document.querySelector("#updated").textContent =
      "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.querySelector("#updated").textContent = "cannot reach the scheduler";
  }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


def jobs_state(dask_scheduler: Any) -> dict[str, Any]:
    """Every published job state, by job id (runs on the scheduler)."""
    try:
        return dict(dask_scheduler.get_metadata(METADATA_KEY, default={}) or {})
    except (KeyError, TypeError):
        return {}


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
            jobs = jobs_state(dask_scheduler)
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
            self.write(_PAGE)

    app.add_handlers(
        r".*",
        [
            (r"/daskscore/api/jobs/?", JobsAPI),
            (r"/daskscore/api/jobs/([^/]+)", JobsAPI),
            (r"/daskscore/?", JobsPage),
        ],
    )
    dask_scheduler._daskscore_routes = True
    return True
