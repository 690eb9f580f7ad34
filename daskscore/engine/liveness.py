"""Whether a job can still make progress: worker deaths and the job's live workers.

The scoring loop counts records; :class:`Liveness` watches the cluster beside
it. The scheduler tells of every worker it loses (its ``"all"`` event topic,
with the tasks the worker was running), and the loop asks it, every poll, which
workers can score the job (on an existing cluster: those holding the job's
resource). A job cannot make progress when no mini-batch ended other than by
its workers dying, while either no worker could score it or workers kept dying
(twice or more); after ``daskscore.no-progress-timeout`` of that it fails, with
a root cause naming the dead workers and the mini-batches they were scoring.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from .._protocol import TryStatus

__all__ = ["Death", "Liveness"]

logger = logging.getLogger("daskscore")

# how many deaths since the last progress mean "workers keep dying"
_DEATHS = 2


@dataclass(frozen=True)
class Death:
    """A worker the scheduler lost without being asked to close it."""

    at: float  # time.monotonic()
    address: str
    keys: tuple[str, ...]  # the tasks it was running


class Liveness:
    """The no-progress watchdog of one job (thread-safe).

    Parameters
    ----------
    timeout_s
        How long a job may go without progress while it cannot make any.
    resource
        The job's worker resource on an existing cluster (None: every worker
        of the cluster is the job's, as on the embedded cluster).
    """

    def __init__(self, timeout_s: float, resource: str | None) -> None:
        self.timeout_s = timeout_s
        self.resource = resource
        self.deaths: list[Death] = []  # since the last progress
        self.died = 0  # workers lost since the job started
        self.names: dict[str, str] = {}  # address -> name, of the workers seen
        self.most_workers = 0  # the most job workers seen at once
        self.live = 0
        self.stalled_since: float | None = None
        self._lock = threading.Lock()
        self._chained = None

    # -- what the scheduler tells -------------------------------------------------
    def subscribe(self, client: Any) -> None:
        """Hear of the workers the scheduler loses (keeps a handler already set)."""
        handlers = getattr(client, "_event_handlers", {})
        self._chained = handlers.get("all") if isinstance(handlers, dict) else None
        try:
            client.subscribe_topic("all", self.on_event)
        except Exception as exc:  # noqa: BLE001 - the watchdog is best effort
            logger.debug("cannot follow the scheduler's events: %s", exc)

    def unsubscribe(self, client: Any) -> None:
        try:
            if self._chained is not None:
                client.subscribe_topic("all", self._chained)
            else:
                client.unsubscribe_topic("all")
        except Exception as exc:  # noqa: BLE001 - the scheduler is gone
            logger.debug("cannot stop following the scheduler's events: %s", exc)

    def on_event(self, event: Any) -> Any:
        """Handler of the scheduler's ``"all"`` topic: note worker deaths."""
        try:
            _, msg = event
            if (
                isinstance(msg, dict)
                and msg.get("action") == "remove-worker"
                and not msg.get("expected")
            ):
                keys = tuple(str(k) for k in msg.get("processing-tasks") or ())
                with self._lock:
                    self.died += 1
                    self.deaths.append(
                        Death(time.monotonic(), str(msg.get("worker", "")), keys)
                    )
        except Exception as exc:  # noqa: BLE001 - an event of another shape
            logger.debug("unexpected scheduler event %r: %s", event, exc)
        if self._chained is not None:
            return self._chained(event)  # the handler that was there before
        return None

    # -- what the loop tells ------------------------------------------------------
    def progress(self, record: dict[str, Any]) -> None:
        """A mini-batch ended: progress, unless its workers died in every try."""
        if record.get("status") == TryStatus.WORKER_DIED:
            return
        with self._lock:
            self.deaths.clear()
            self.stalled_since = None

    def check(self, workers: dict[str, dict[str, Any]], now: float) -> bool:
        """Given the scheduler's worker table, whether the job is stuck for good."""
        mine = [
            a
            for a, w in workers.items()
            if self.resource is None
            or (w.get("resources") or {}).get(self.resource, 0) >= 1
        ]
        with self._lock:
            self.names.update({a: str(w.get("name", a)) for a, w in workers.items()})
            self.live = len(mine)
            self.most_workers = max(self.most_workers, len(mine))
            deaths = list(self.deaths)
            if mine and len(deaths) < _DEATHS:
                self.stalled_since = None
                return False
            if self.stalled_since is None:
                self.stalled_since = deaths[0].at if len(deaths) >= _DEATHS else now
            return now - self.stalled_since >= self.timeout_s

    # -- the root cause -----------------------------------------------------------
    def dead(self) -> tuple[list[Death], list[str]]:
        """The deaths since the last progress and the names of the dead workers."""
        with self._lock:
            deaths = list(self.deaths)
            names = sorted({self.names.get(d.address, d.address) for d in deaths})
        return deaths, names

    def reason(self, mini_batches: list[int], causes: list[str], logs: str) -> str:
        """Why the job cannot make progress, in one line."""
        deaths, names = self.dead()
        waited = f"{self.timeout_s:g} s"
        if not deaths:
            kind = "with the job's script loaded " if self.resource else ""
            return (
                f"no worker {kind}has been alive for {waited} "
                f"({self.live} of the cluster's workers can score this job); "
                "start workers, then run the same step again to resume"
            )
        expected = max(self.most_workers, 1)
        if len(names) >= expected:
            # a replacement that died before it was seen is named by its address
            times = f" ({len(deaths)} times)" if len(deaths) > expected else ""
            who = f"all {expected} workers died{times}"
        else:
            who = f"workers died {len(deaths)} times in a row ({', '.join(names)})"
        what = ""
        if mini_batches:
            word = "mini-batch" if len(mini_batches) == 1 else "mini-batches"
            what = f" while scoring {word} {', '.join(map(str, mini_batches[:5]))}"
        why = f" ({', '.join(causes)})" if causes else ""
        return (
            f"{who}{what}{why}, and no mini-batch ended for {waited}; see {logs}"
        )
