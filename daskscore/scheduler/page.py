"""The job page at ``/daskscore/``: plain HTML and a small script, no CDN.

It polls ``api/jobs`` (:func:`~daskscore.scheduler.dashboard.job_views`) every
second and redraws: a summary table of every job, then for each job its
progress bars (mini-batches done, failed, running and remaining; items), a
throughput chart (items/s and mini-batches/s, from the job's samples), the ETA,
elapsed time, settings and thresholds in one line, the status (with the root
cause when it failed), a line per worker and the latest failed tries. The page
itself is ``page.html`` beside this module (package data).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAGE"]

PAGE = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")
