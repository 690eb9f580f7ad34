"""Error budgets: whether the failures counted so far end the job.

``error_threshold`` counts failed items, ``allowed_failed_count`` failed
mini-batches, ``allowed_failed_percent`` failed mini-batches as a share of all
of them. They are checked after every record, so a breach stops the job while
it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._protocol import TryStatus
from ..config import ParallelRunConfig
from ..progress import JobProgress

__all__ = ["Tally", "has_failure_budget", "threshold_breach"]


def has_failure_budget(cfg: ParallelRunConfig) -> bool:
    """Whether a threshold is set: then each failure must reach the client at once."""
    return (
        cfg.error_threshold != -1
        or cfg.allowed_failed_count not in (None, -1)
        or cfg.allowed_failed_percent is not None
    )


class Tally:
    """Counts records as they arrive and says when the job must stop.

    Parameters
    ----------
    cfg
        The step's settings (its thresholds).
    progress
        The live counts, updated in place (the progress bar and the dashboard
        read the same object).
    workers
        How many workers score the job: ``init()`` failing on twice as many
        mini-batches in a row means it fails everywhere.
    """

    def __init__(self, cfg: ParallelRunConfig, progress: JobProgress, workers: int):
        self.cfg = cfg
        self.progress = progress
        self.workers = max(1, workers)
        self._init_errors = 0

    def count(self, record: dict[str, Any]) -> None:
        """Add one mini-batch's final record to the counts."""
        p = self.progress
        p.done_mini_batches += 1
        p.succeeded_items += record["succeeded"]
        p.failed_items += record["failed"]
        if record.get("failed_mini_batch"):
            p.failed_mini_batches += 1

    def resume(self, records: Iterable[dict[str, Any]]) -> None:
        """Count what an earlier run committed (shown as resumed, not in rates)."""
        for record in records:
            self.count(record)
        p = self.progress
        p.resumed_mini_batches = p.done_mini_batches
        p.resumed_items = p.succeeded_items + p.failed_items

    def breach(self) -> str | None:
        """The threshold the counts exceed, in words; None when none is."""
        p = self.progress
        return threshold_breach(
            self.cfg, p.failed_items, p.failed_mini_batches, p.total_mini_batches
        )

    def init_watchdog(self, record: dict[str, Any]) -> str | None:
        """Fail the job when init() keeps failing everywhere (not a data problem)."""
        if record.get("status") != TryStatus.INIT_ERROR:
            self._init_errors = 0
            return None
        self._init_errors += 1
        if self._init_errors >= 2 * self.workers:
            return (
                f"init() failed on every worker ({self._init_errors} mini-batches "
                f"in a row): {record.get('error', '')}"
            )
        return None

    def add(self, record: dict[str, Any]) -> str | None:
        """Count a record; return why the job must stop now, if it must."""
        self.count(record)
        return self.breach() or self.init_watchdog(record)


def threshold_breach(
    cfg: ParallelRunConfig, failed_items: int, failed_mbs: int, total_mbs: int
) -> str | None:
    """Which failure threshold is exceeded, in words; None when none is."""
    if cfg.error_threshold != -1 and failed_items > cfg.error_threshold:
        return (
            f"error_threshold={cfg.error_threshold} exceeded: {failed_items} "
            "items failed"
        )
    limit = cfg.allowed_failed_count
    if limit not in (None, -1) and failed_mbs > limit:
        return (
            f"allowed_failed_count={limit} exceeded: {failed_mbs} mini-batches failed"
        )
    if cfg.allowed_failed_percent is not None and total_mbs:
        percent = 100.0 * failed_mbs / total_mbs
        if percent > cfg.allowed_failed_percent:
            return (
                f"allowed_failed_percent={cfg.allowed_failed_percent:g} exceeded: "
                f"{failed_mbs} of {total_mbs} mini-batches ({percent:.1f}%) failed"
            )
    return None
