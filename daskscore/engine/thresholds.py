"""Error budgets: whether the failures counted so far end the job.

``error_threshold`` counts failed items, ``allowed_failed_count`` failed
mini-batches, ``allowed_failed_percent`` failed mini-batches as a share of all
of them. They are checked after every record, so a breach stops the job while
it runs.
"""

from __future__ import annotations

from ..config import ParallelRunConfig

__all__ = ["threshold_breach"]


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
