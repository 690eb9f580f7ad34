"""A finished job's status, root cause and counts from its records (no cluster)."""

from __future__ import annotations

from daskscore._protocol import MiniBatchSpec, TryStatus
from daskscore.engine.summary import job_summary, lost_with_worker


def rec(index, status=TryStatus.RUN_DONE, failed=0, tries=None, error=""):
    return {
        "index": index, "input": f"f{index}", "items": 2, "succeeded": 2 - failed,
        "failed": failed, "status": status,
        "failed_mini_batch": status != TryStatus.RUN_DONE, "error": error,
        "tries": tries or [{"status": status}],
    }


def test_all_scored_is_completed():
    s = job_summary([rec(0), rec(1, failed=1)], 2, "", elapsed=2.0)
    assert s["status"] == "Completed" and s["reason"] == ""
    assert (s["total_items"], s["succeeded_items"], s["failed_items"]) == (4, 3, 1)
    assert s["items_per_second"] == 2.0


def test_a_stop_reason_fails_the_job():
    s = job_summary([rec(0)], 1, "cancelled on request (daskscore cancel)", 1.0)
    assert s["status"] == "Failed"


def test_mini_batches_never_scored_fail_the_job():
    s = job_summary([rec(0)], 3, "", 1.0)
    assert s["status"] == "Failed" and s["reason"] == "2 mini-batches were not scored"


def test_init_failing_everywhere_is_the_root_cause():
    records = [rec(i, TryStatus.INIT_ERROR, 2, error="init() raised X") for i in (0, 1)]
    s = job_summary(records, 2, "", 1.0)
    assert s["reason"] == "init() failed on every worker: init() raised X"
    assert s["first_errors"][0].startswith("mini-batch 0 (f0): INIT_ERROR")


def test_tries_lost_with_a_worker_are_counted():
    lost = [{"status": TryStatus.WORKER_DIED}, {"status": TryStatus.RUN_DONE}]
    s = job_summary([rec(0, tries=lost)], 1, "", 1.0)
    assert s["lost_tries"] == 1 and s["tries"] == 2


def test_a_mini_batch_whose_worker_always_died():
    spec = MiniBatchSpec(index=7, kind="files", paths=("a", "b"), items=2)
    record = lost_with_worker(spec, RuntimeError("KilledWorker: x"))
    assert record["status"] == "WORKER_DIED" and record["failed"] == 2
    assert record["failed_mini_batch"] and record["tries"][0]["try"] == 1


def test_workers_dying_in_every_try_of_every_mini_batch_fail_the_job():
    error = "the worker died in each of the 3 tries of this mini-batch (w-0)"
    records = [rec(i, TryStatus.WORKER_DIED, 2, error=error) for i in (0, 1)]
    s = job_summary(records, 2, "", 1.0)
    assert s["status"] == "Failed"
    assert s["reason"] == f"the workers died in every try of every mini-batch: {error}"
    # one such mini-batch among others is only a failed mini-batch
    s = job_summary([records[0], rec(1)], 2, "", 1.0)
    assert s["status"] == "Completed"


def test_a_lost_scheduler_says_how_to_resume():
    from daskscore.engine.summary import scheduler_lost

    text = scheduler_lost("tcp://10.0.0.5:8786", 21)
    assert text.startswith("lost the Dask scheduler at tcp://10.0.0.5:8786 while 21 ")
    assert text.endswith("run the same command again to resume")
