"""``daskscore status JOB_ID``: the job page's live view, in the terminal.

The same state as ``/daskscore/api/jobs/JOB_ID`` (``--json`` prints it): the
progress, a line per worker and the latest failed tries. On a terminal it
redraws every second until Ctrl-C (or the job ends); piped, or with ``--once``,
it prints once.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from .._protocol import FINAL_JOB_STATUSES
from ..engine import detached as remote

__all__ = ["show_status", "status_lines"]

_FAILURES_SHOWN = 5


def _bar(done: int, failed: int, running: int, total: int, width: int = 40) -> str:
    if total <= 0:
        return "[" + " " * width + "]"
    cells = [
        ("#", done - failed),
        ("x", failed),
        (">", min(running, total - done)),
    ]
    out = "".join(c * round(width * n / total) for c, n in cells)[:width]
    return "[" + out.ljust(width, ".") + "]"


def _worker_line(w: dict[str, Any], limit: float) -> str:
    line = f"  {w.get('name') or w.get('address')}: {w.get('state')}"
    if w.get("state") == "scoring" and "mini_batch" in w:
        seconds = float(w.get("seconds") or 0.0)
        line += f" mini-batch {w['mini_batch']} (try {w.get('try')}) for {seconds:.1f}s"
        if w.get("near_timeout"):
            line += f" NEAR run_invocation_timeout={limit:g}s"
    return (
        f"{line}, {w.get('done_mini_batches', 0)} done, "
        f"{float(w.get('items_per_second') or 0):.2f} items/s"
    )


def status_lines(state: dict[str, Any]) -> list[str]:
    """The terminal view of a job's state (as the HTTP route serves it)."""
    lines = [remote.state_line(state)]
    total = int(state.get("mini_batches") or 0)
    done = int(state.get("done_mini_batches") or 0)
    failed = int(state.get("failed_mini_batches") or 0)
    running = int(state.get("running_mini_batches") or 0)
    lines.append(
        f"{_bar(done, failed, running, total)} {done - failed} done, {failed} failed, "
        f"{running} running, {max(0, total - done - running)} remaining"
    )
    settings = state.get("settings") or {}
    if settings:
        thresholds = ", ".join(
            f"{t['name']}={t['limit']} (now {t['value']})"
            for t in state.get("thresholds") or []
        )
        lines.append(
            f"script {settings.get('script')}, mini_batch_size "
            f"{settings.get('mini_batch_size')}, {thresholds or 'no thresholds'}, "
            f"output {settings.get('output')}"
        )
    workers = state.get("workers") or []
    if workers:
        lines.append("workers:")
        limit = float(settings.get("run_invocation_timeout") or 0)
        lines += [_worker_line(w, limit) for w in workers]
    failures = (state.get("failures") or [])[-_FAILURES_SHOWN:]
    if failures:
        lines.append("latest failures:")
        lines += [
            f"  mini-batch {f['mini_batch']} try {f['try']} {f['status']}: "
            f"{f['error']} ({f['traceback']})"
            for f in reversed(failures)
        ]
    return lines


def show_status(client: Any, job_id: str, as_json: bool, once: bool) -> int:
    """Print the job's view (refreshing on a terminal); the exit code."""
    watch = not once and not as_json and sys.stdout.isatty()
    try:
        return _show(client, job_id, as_json, watch)
    except KeyboardInterrupt:  # Ctrl-C ends the view, not the job
        return 0


def _show(client: Any, job_id: str, as_json: bool, watch: bool) -> int:
    while True:
        state = remote.job_view(client, job_id)
        if as_json:
            print(json.dumps(state, default=str, indent=1))
        elif watch:
            sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(status_lines(state)) + "\n")
            sys.stdout.flush()
        else:
            print("\n".join(status_lines(state)))
        if not watch or state.get("status") in FINAL_JOB_STATUSES:
            return 1 if state.get("status") == "Failed" else 0
        time.sleep(1.0)
