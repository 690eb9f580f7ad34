"""Live progress: each committed mini-batch reaches the client within a moment.

A pack task returns its records only when the whole pack ends. So that the
client's progress, ETA and live thresholds move per mini-batch, ``score_pack``
hands every record it commits to the worker's :class:`LiveFeed`, which sends a
short summary of it (what :class:`~daskscore.engine.thresholds.Tally` counts) to
the client as a Dask event (``Worker.log_event`` on the job's topic,
``Client.subscribe_topic`` on the client): the worker's batched stream to its
scheduler, so it works wherever the cluster does (remote, TLS).

Summaries are batched: the first one after a quiet spell starts a timer of
``interval`` seconds, and every summary committed until it fires goes in the
same message. A pack that ends first drops its own summaries (its return value
carries the full records), so packs of tiny mini-batches send nothing extra.
The client counts a mini-batch once, whichever way its record arrives first;
the record on disk stays the truth (resume, reports).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["LiveFeed", "live_summary", "live_topic"]

# an error text longer than this is cut in the summary (the record keeps it)
_ERROR_LIMIT = 2_000
_ERROR_LINE = 300  # a try's error: its first line, cut here
_SUMMARY_KEYS = ("index", "items", "succeeded", "failed", "failed_mini_batch")

_feeds: weakref.WeakKeyDictionary[Any, LiveFeed] = weakref.WeakKeyDictionary()
_feeds_lock = threading.Lock()


def live_topic(plugin_name: str) -> str:
    """The Dask event topic of one job's live records."""
    return f"{plugin_name}-live"


def live_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the client counts of a record; ``live`` marks it as not the record."""
    summary = {key: record.get(key) for key in _SUMMARY_KEYS}
    summary["status"] = str(record.get("status") or "")
    summary["error"] = str(record.get("error") or "")[:_ERROR_LIMIT]
    # each try, short: the dashboard's failures, tries and run() seconds
    summary["tries"] = [_try_summary(t) for t in record.get("tries") or []]
    summary["live"] = True
    return summary


def _try_summary(t: dict[str, Any]) -> dict[str, Any]:
    error = str(t.get("error") or "")
    return {
        "try": t.get("try"),
        "status": str(t.get("status") or ""),
        "run_seconds": t.get("run_seconds") or 0.0,
        "worker": t.get("worker") or "",
        "error": error.splitlines()[0][:_ERROR_LINE] if error else "",
    }


class LiveFeed:
    """Sends one worker's committed records to the client, batched."""

    def __init__(self, worker: Any, topic: str, interval: float) -> None:
        self.worker = worker
        self.topic = topic
        self.interval = max(0.0, float(interval))
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._timer: threading.Timer | None = None
        self.messages = 0  # sent so far (measured in tests and benchmarks)

    @classmethod
    def of(cls, plugin: Any, worker: Any, topic: str, interval: float) -> LiveFeed:
        """The feed of ``plugin`` (one job) on this worker, made on first use."""
        with _feeds_lock:
            feed = _feeds.get(plugin)
            if feed is None:
                feed = _feeds[plugin] = cls(worker, topic, interval)
            return feed

    def add(self, record: dict[str, Any]) -> None:
        """A mini-batch's record is committed: send it within ``interval``."""
        with self._lock:
            self._buffer.append(live_summary(record))
            if self._timer is None:
                self._timer = threading.Timer(self.interval, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def drop(self, indices: Iterable[int]) -> None:
        """The pack of ``indices`` returned them: no need to send them too."""
        gone = set(indices)
        with self._lock:
            self._buffer = [s for s in self._buffer if s["index"] not in gone]

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._timer = None
        if not batch:
            return
        try:
            self.worker.log_event(self.topic, batch)
            self.messages += 1
        except Exception:  # noqa: BLE001 - the worker is closing: the pack's
            pass  # return value (or, after a death, the record on disk) counts
