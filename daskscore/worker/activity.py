"""What one worker is doing for a job, for the dashboard: a few numbers, cheap.

The job's :class:`~daskscore.worker.plugin.ScoringPlugin` keeps a
:class:`WorkerActivity` and registers :meth:`WorkerActivity.snapshot` as one of
its worker's heartbeat metrics (``Worker.metrics``, key
:func:`~daskscore._protocol.worker_metric_key`): the worker sends it with its
heartbeat, which it sends anyway (about once a second), and the scheduler keeps
the latest in ``WorkerState.metrics``, where the dashboard routes read it. No
message of its own, no lock on the scoring path: the try sets two attributes.
Durations are measured on the worker; the scheduler adds the time since the
heartbeat (``WorkerState.last_seen``), so clocks need not agree.

States: ``starting`` (the script is imported), ``init`` (``init()`` runs),
``restarting`` (a new runner after a timeout or a crash: importing or in
``init()`` again), ``scoring`` (a mini-batch), ``idle``.
"""

from __future__ import annotations

import time
from typing import Any

from .._protocol import worker_metric_key

__all__ = ["WorkerActivity"]


class WorkerActivity:
    """One worker's state for one job (read by its heartbeat)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.current: tuple[int, int, float] | None = None  # index, try, wall start
        self.done = 0
        self.items = 0
        self.busy_seconds = 0.0
        self.started_at = time.time()
        self.plugin: Any = None

    @classmethod
    def attach(cls, plugin: Any, worker: Any) -> WorkerActivity:
        """The activity of ``plugin`` (one job), sent with ``worker``'s heartbeat."""
        activity = cls(plugin.agent_name)
        activity.plugin = plugin
        worker.metrics[worker_metric_key(plugin.name)] = activity.snapshot
        return activity

    @staticmethod
    def detach(plugin: Any, worker: Any) -> None:
        getattr(worker, "metrics", {}).pop(worker_metric_key(plugin.name), None)

    def trying(self, index: int, try_no: int) -> None:
        self.current = (index, try_no, time.time())

    def tried(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            self.busy_seconds += max(0.0, time.time() - current[2])

    def committed(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.items += int(record.get("items") or 0)

    def state(self) -> str:
        plugin = self.plugin
        runner = getattr(plugin, "runner", None)
        runner_state = getattr(runner, "state", "dead") if runner else "dead"
        restarted = getattr(plugin, "restarts", 0) > 0
        if runner_state in ("importing", "initializing"):
            if restarted:
                return "restarting"
            return "starting" if runner_state == "importing" else "init"
        if self.current is not None:
            return "restarting" if runner_state == "dead" and restarted else "scoring"
        return "idle"

    def snapshot(self, worker: Any = None) -> dict[str, Any]:
        """The heartbeat metric (runs on the worker's event loop: cheap)."""
        out: dict[str, Any] = {
            "name": self.name,
            "state": self.state(),
            "done_mini_batches": self.done,
            "items": self.items,
            "busy_seconds": round(self.busy_seconds, 3),
            "restarts": getattr(self.plugin, "restarts", 0),
            "started_at": self.started_at,
            "alive_seconds": round(time.time() - self.started_at, 3),
        }
        current = self.current
        if current is not None:
            out["mini_batch"], out["try"], since = current
            out["seconds"] = round(max(0.0, time.time() - since), 3)
        return out
