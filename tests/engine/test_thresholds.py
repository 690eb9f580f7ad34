"""Error budgets and the init watchdog, counted record by record (no cluster)."""

from __future__ import annotations

import pytest

import daskscore as ds
from daskscore._protocol import TryStatus
from daskscore.engine.thresholds import Tally, has_failure_budget, threshold_breach
from daskscore.progress import JobProgress


def cfg(**kw) -> ds.ParallelRunConfig:
    return ds.ParallelRunConfig(entry_script="score.py", **kw)


def record(index, failed=0, items=10, status=TryStatus.RUN_DONE, error=""):
    return {
        "index": index,
        "items": items,
        "succeeded": items - failed,
        "failed": failed,
        "status": status,
        "failed_mini_batch": status != TryStatus.RUN_DONE,
        "error": error,
    }


def tally(config, total=10, workers=2) -> Tally:
    return Tally(config, JobProgress(total_mini_batches=total), workers)


def test_no_budget_never_breaches():
    t = tally(cfg())
    for i in range(10):
        assert t.add(record(i, failed=10, status=TryStatus.RUN_EXCEPTION)) is None
    assert t.progress.failed_items == 100
    assert t.progress.failed_mini_batches == 10
    assert not has_failure_budget(cfg())


def test_error_threshold_counts_failed_items_and_breaches_past_it():
    t = tally(cfg(error_threshold=5))
    assert t.add(record(0, failed=5)) is None
    reason = t.add(record(1, failed=1))
    assert reason == "error_threshold=5 exceeded: 6 items failed"
    assert has_failure_budget(cfg(error_threshold=5))


def test_allowed_failed_count_counts_failed_mini_batches():
    t = tally(cfg(allowed_failed_count=1))
    assert t.add(record(0, failed=3, status=TryStatus.RUN_EXCEPTION)) is None
    reason = t.add(record(1, failed=3, status=TryStatus.READ_ERROR))
    assert reason is not None and "allowed_failed_count=1" in reason


@pytest.mark.parametrize("percent, breaches_at", [(10, 2), (25, 3), (0, 1)])
def test_allowed_failed_percent_is_of_all_mini_batches(percent, breaches_at):
    t = tally(cfg(allowed_failed_percent=percent), total=10)
    reasons = [
        t.add(record(i, failed=10, status=TryStatus.RUN_EXCEPTION)) for i in range(5)
    ]
    first = next(i for i, r in enumerate(reasons) if r)
    assert first + 1 == breaches_at


def test_the_init_watchdog_needs_twice_the_workers_in_a_row():
    t = tally(cfg(), workers=2)
    for i in range(3):
        assert t.add(record(i, status=TryStatus.INIT_ERROR, error="boom")) is None
    # a scored mini-batch in between starts the count again
    assert t.add(record(3)) is None
    for i in range(4, 7):
        assert t.add(record(i, status=TryStatus.INIT_ERROR, error="boom")) is None
    reason = t.add(record(7, status=TryStatus.INIT_ERROR, error="boom"))
    assert reason == "init() failed on every worker (4 mini-batches in a row): boom"


def test_threshold_breach_matches_the_tally():
    c = cfg(allowed_failed_count=0)
    assert threshold_breach(c, 0, 0, 5) is None
    assert threshold_breach(c, 1, 1, 5) is not None
