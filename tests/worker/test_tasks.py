"""Retry and counting rules of one mini-batch (``score_mini_batch``), no cluster.

``try_once`` is a plain Python callable standing in for the runner: it gets the
try number and returns the outcome of that try (a ``TryOutcome``), as the runner
would.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from daskscore._protocol import JobSpec, MiniBatchSpec, TryOutcome, TryStatus
from daskscore.worker.tasks import score_mini_batch

INIT_ERROR = TryStatus.INIT_ERROR
READ_ERROR = TryStatus.READ_ERROR
RUN_DONE = TryStatus.RUN_DONE
RUN_EXCEPTION = TryStatus.RUN_EXCEPTION
RUN_TIMEOUT = TryStatus.RUN_TIMEOUT
WORKER_DIED = TryStatus.WORKER_DIED


def spec(items: int = 4, index: int = 7) -> MiniBatchSpec:
    paths = tuple(f"/data/f{i}.png" for i in range(items))
    return MiniBatchSpec(index=index, kind="files", paths=paths, items=items)


def done(items: int, succeeded: int | None = None, **extra) -> TryOutcome:
    succeeded = items if succeeded is None else succeeded
    fields = {"status": RUN_DONE, "items": items, "succeeded": succeeded,
              "failed": items - succeeded, "error": "", "traceback": "",
              "has_output": True, "output_rows": succeeded, "warning": "", **extra}
    return TryOutcome(**fields)


def failed(status: str, items: int, error: str = "boom", **extra) -> TryOutcome:
    fields = {"status": status, "items": items, "succeeded": 0, "failed": items,
              "error": error, "traceback": f"Traceback: {error}", "has_output": False,
              "warning": "", **extra}
    return TryOutcome(**fields)


def job_spec(**secrets) -> JobSpec:
    """A job spec whose only meaningful parts are the credentials in ``secrets``."""
    return JobSpec(
        bundle=b"", script_name="score.py", run_invocation_timeout=60.0,
        run_max_try=3, init_timeout=600.0, output_action="append_row",
        output_format="txt", output_url="/out", parts_url="/out/.daskscore/parts",
        records_url="/out/.daskscore/records", log_dir="/out/logs",
        log_url="/out/logs", logs_local=True, script_output_dir="/out/outputs",
        script_output_url="/out/outputs", **secrets,
    )


class ScriptedTries:
    """A try_once that plays back outcomes and records the try numbers it got."""

    def __init__(self, *outcomes: TryOutcome) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[int] = []

    def __call__(self, try_no: int) -> TryOutcome:
        self.calls.append(try_no)
        return replace(self.outcomes[len(self.calls) - 1])


def test_first_try_succeeds():
    tries = ScriptedTries(done(4))
    record = score_mini_batch(spec(4), tries, run_max_try=3, worker="w-1")
    assert tries.calls == [1]
    assert record["index"] == 7
    assert (record["items"], record["succeeded"], record["failed"]) == (4, 4, 0)
    assert record["status"] == RUN_DONE
    assert record["failed_mini_batch"] is False
    assert record["has_output"] is True
    assert record["output_rows"] == 4
    assert record["worker"] == "w-1"
    assert len(record["tries"]) == 1


@pytest.mark.parametrize(
    "status", [RUN_EXCEPTION, RUN_TIMEOUT, WORKER_DIED, INIT_ERROR]
)
def test_retried_until_success(status):
    tries = ScriptedTries(failed(status, 4, "first"), failed(status, 4, "second"),
                          done(4))
    record = score_mini_batch(spec(4), tries, run_max_try=5)
    assert tries.calls == [1, 2, 3]  # stops at the first success
    assert record["status"] == RUN_DONE
    assert (record["succeeded"], record["failed"]) == (4, 0)
    assert record["failed_mini_batch"] is False
    assert record["error"] == ""
    assert [t["status"] for t in record["tries"]] == [status, status, RUN_DONE]


@pytest.mark.parametrize("status", [RUN_EXCEPTION, RUN_TIMEOUT, WORKER_DIED])
@pytest.mark.parametrize("run_max_try", [1, 2, 3])
def test_run_max_try_exhausted_fails_all_items(status, run_max_try):
    outcomes = [failed(status, 5, f"try {n}") for n in range(1, run_max_try + 1)]
    tries = ScriptedTries(*outcomes, done(5))  # a success that must never be reached
    record = score_mini_batch(spec(5), tries, run_max_try=run_max_try)
    assert tries.calls == list(range(1, run_max_try + 1))
    assert (record["items"], record["succeeded"], record["failed"]) == (5, 0, 5)
    assert record["failed_mini_batch"] is True
    assert record["status"] == status
    assert record["error"] == f"try {run_max_try}"  # the last try's error
    assert record["has_output"] is False


def test_exhausted_ignores_succeeded_reported_by_a_failed_try():
    # a failed try must never contribute successes, whatever the outcome says
    bad = failed(RUN_EXCEPTION, 4)
    bad.succeeded = 3
    record = score_mini_batch(spec(4), ScriptedTries(bad, replace(bad)), run_max_try=2)
    assert (record["succeeded"], record["failed"]) == (0, 4)


def test_short_return_is_not_retried():
    tries = ScriptedTries(done(10, succeeded=6), done(10))
    record = score_mini_batch(spec(10), tries, run_max_try=3)
    assert tries.calls == [1]
    assert record["status"] == RUN_DONE
    assert (record["items"], record["succeeded"], record["failed"]) == (10, 6, 4)
    assert record["failed_mini_batch"] is False
    assert len(record["tries"]) == 1


def test_empty_return_is_not_retried_and_fails_every_item():
    tries = ScriptedTries(done(3, succeeded=0), done(3))
    record = score_mini_batch(spec(3), tries, run_max_try=3)
    assert tries.calls == [1]
    assert (record["succeeded"], record["failed"]) == (0, 3)


def test_short_return_after_a_failed_try():
    tries = ScriptedTries(failed(RUN_EXCEPTION, 4), done(4, succeeded=1))
    record = score_mini_batch(spec(4), tries, run_max_try=3)
    assert tries.calls == [1, 2]
    assert (record["succeeded"], record["failed"]) == (1, 3)


def test_read_error_is_not_retried():
    tries = ScriptedTries(failed(READ_ERROR, 1, "cannot read Parquet metadata"),
                          done(1))
    record = score_mini_batch(spec(1), tries, run_max_try=3)
    assert tries.calls == [1]
    assert record["status"] == READ_ERROR
    assert (record["items"], record["succeeded"], record["failed"]) == (1, 0, 1)
    assert record["failed_mini_batch"] is True
    assert record["error"] == "cannot read Parquet metadata"


def test_partial_read_error_counts_the_scored_files():
    # a FileDataset mini-batch with 2 unreadable files of 5: the 3 others are scored
    outcome = done(5, succeeded=3, read_failed=2)
    outcome = replace(outcome, status=READ_ERROR,
                      error="2 file(s) cannot be read: a, b")
    tries = ScriptedTries(outcome, done(5))
    record = score_mini_batch(spec(5), tries, run_max_try=3)
    assert tries.calls == [1]
    assert record["status"] == READ_ERROR
    assert (record["succeeded"], record["failed"]) == (3, 2)
    assert record["failed_mini_batch"] is True
    assert record["has_output"] is True


def test_tries_recorded_in_order_with_timing_and_worker():
    tries = ScriptedTries(failed(RUN_EXCEPTION, 2, "e1"), failed(RUN_TIMEOUT, 2, "e2"),
                          done(2))
    record = score_mini_batch(spec(2), tries, run_max_try=3, worker="agent-3")
    assert [t["try"] for t in record["tries"]] == [1, 2, 3]
    assert [t["status"] for t in record["tries"]] == [RUN_EXCEPTION, RUN_TIMEOUT,
                                                     RUN_DONE]
    assert [t["error"] for t in record["tries"]] == ["e1", "e2", ""]
    assert all(t["worker"] == "agent-3" for t in record["tries"])
    assert all(t["elapsed_seconds"] >= 0 for t in record["tries"])
    starts = [t["started_at"] for t in record["tries"]]
    assert starts == sorted(starts)


def test_try_numbers_passed_to_try_once_start_at_one():
    seen = []

    def try_once(try_no: int) -> TryOutcome:
        seen.append(try_no)
        return failed(RUN_EXCEPTION, 1) if try_no < 4 else done(1)

    record = score_mini_batch(spec(1), try_once, run_max_try=4)
    assert seen == [1, 2, 3, 4]
    assert record["status"] == RUN_DONE


def test_long_traceback_is_truncated_to_its_end():
    tb = "x" * 50_000 + "THE END"
    record = score_mini_batch(
        spec(1), ScriptedTries(failed(RUN_EXCEPTION, 1, traceback=tb)), run_max_try=1
    )
    kept = record["tries"][0]["traceback"]
    assert len(kept) == 20_000
    assert kept.endswith("THE END")


def test_warning_of_the_last_try_is_kept():
    over = done(2, warning="run() returned 3 results for 2 inputs")
    record = score_mini_batch(spec(2), ScriptedTries(over), run_max_try=1)
    assert record["warning"] == "run() returned 3 results for 2 inputs"
    assert (record["succeeded"], record["failed"]) == (2, 0)


def test_record_describes_the_input():
    record = score_mini_batch(spec(2), ScriptedTries(done(2)), run_max_try=1)
    assert "/data/f0.png" in record["input"] and "/data/f1.png" in record["input"]


@pytest.mark.parametrize(
    "count,workers", [(32, 2), (10_000, 2), (5, 4), (1, 1), (700, 16)]
)
def test_packs_keep_order_and_shrink_towards_the_end(count, workers):
    from daskscore import _settings
    from daskscore.engine.placement import pack_mini_batches

    packs = pack_mini_batches(list(range(count)), workers)
    assert [i for pack in packs for i in pack] == list(range(count))
    sizes = [len(p) for p in packs]
    assert max(sizes) <= _settings.get("pack.max-mini-batches") == 64
    assert sizes == sorted(sizes, reverse=True)
    # the last packs are single mini-batches: no worker is left with a big one
    assert sizes[-min(len(sizes), workers):] == [1] * min(len(sizes), workers)


def test_no_mini_batches_no_packs():
    from daskscore.engine.placement import pack_mini_batches

    assert pack_mini_batches([], 2) == []


def test_recorded_errors_never_hold_a_credential_of_the_job():
    from daskscore.worker.tasks import _redacted

    key = "c2VjcmV0LWtleS1vZi10aGUtbW9kZWxzLWFjY291bnQ="
    sas = "sv=2024-01-01&sig=abcDEF123456%2Bxyz"
    job = job_spec(
        sources=[{"storage_options": {"sas_token": sas}, "read_options": {}}],
        output_storage_options={"account_key": key},
        model_options={"abfs://ws/models/m/1": {
            "connection_string": f"AccountName=a;AccountKey={key}x;"}},
    )
    outcome = TryOutcome(
        status="RUN_EXCEPTION",
        error=f"ValueError: cannot score; environment {{'K': '{key}'}}",
        traceback=f"... {sas} ... AccountKey={key}x ...",
        warning="",
    )
    got = _redacted(outcome, job).to_dict()
    text = got["error"] + got["traceback"]
    assert key not in text and "abcDEF123456" not in text
    assert got["error"].startswith("ValueError: cannot score; environment")
    assert got["status"] == "RUN_EXCEPTION"


def _logs(tmp_path):
    """Both commit logs over one records folder: a local pack log, and the
    file-per-mark log of blob storage (here over fsspec's local filesystem)."""
    import fsspec

    from daskscore.output.commitlog import FileLog, PackLog

    fs = fsspec.filesystem("file")
    return {
        "pack": lambda: PackLog(str(tmp_path), 3, 6),
        "files": lambda: FileLog(fs, str(tmp_path)),
    }


@pytest.mark.parametrize("kind", ["pack", "files"])
@pytest.mark.parametrize("same_run,status", [(True, "WORKER_DIED"),
                                             (False, "INTERRUPTED")])
def test_a_try_that_never_finished_is_told_apart_by_run(
        tmp_path, same_run, status, kind):
    from daskscore.worker.tasks import _lost_tries

    log = _logs(tmp_path)[kind]
    assert _lost_tries(log(), 3, "worker-a", "job-run-1") == []  # first try
    lost = _lost_tries(log(), 3, "worker-b",
                       "job-run-1" if same_run else "job-run-2")[-1].to_dict()
    assert lost["status"] == status and lost["try"] == 0
    assert lost["worker"] == "worker-a"
    assert lost["error"].endswith("scored again on worker-b")
    if not same_run:
        assert "died" not in lost["error"]


def test_an_input_account_key_is_masked_in_recorded_errors():
    from daskscore.worker.tasks import _redacted

    key = "c2VjcmV0LWtleS1vZi10aGUtaW5wdXQtYWNjb3VudA=="
    job = job_spec(
        sources=[{"storage_options": {"account_name": "acct", "account_key": key},
                  "read_options": {}}],
        output_storage_options={},
        model_options={},
    )
    got = _redacted(TryOutcome(status=RUN_EXCEPTION,
                               error=f"ValueError: options {{'account_key': '{key}'}}",
                               traceback=f"... {key} ..."), job).to_dict()
    assert key not in got["error"] + got["traceback"]
    assert got["error"].startswith("ValueError: options")


def _died(worker: str) -> TryOutcome:
    return TryOutcome(status=WORKER_DIED, worker=worker,
                      error=f"the worker {worker} died while scoring this mini-batch")


def test_each_try_lost_with_its_worker_is_one_of_run_max_try():
    tries = ScriptedTries(failed(RUN_EXCEPTION, 4), done(4))
    record = score_mini_batch(spec(4), tries, run_max_try=3, worker="w-3",
                              lost=[_died("w-1")])
    assert tries.calls == [2, 3]  # the lost try was try 1
    assert [(t["try"], t["status"]) for t in record["tries"]] == [
        (1, WORKER_DIED), (2, RUN_EXCEPTION), (3, RUN_DONE)]
    assert record["status"] == RUN_DONE and record["succeeded"] == 4


def test_a_mini_batch_whose_worker_died_run_max_try_times_fails_without_run():
    tries = ScriptedTries(done(4))
    record = score_mini_batch(spec(4), tries, run_max_try=2, worker="w-3",
                              lost=[_died("w-1"), _died("w-2")])
    assert tries.calls == []  # run() is not called again
    assert record["status"] == WORKER_DIED and record["failed_mini_batch"]
    assert (record["items"], record["succeeded"], record["failed"]) == (4, 0, 4)
    assert [(t["try"], t["status"]) for t in record["tries"]] == [
        (1, WORKER_DIED), (2, WORKER_DIED)]
    assert "died in each of the 2 tries" in record["error"]
    assert "w-1, w-2" in record["error"]


@pytest.mark.parametrize("kind", ["pack", "files"])
def test_the_start_marker_keeps_every_try_lost_in_this_run(tmp_path, kind):
    from daskscore.output.store import StateStore
    from daskscore.worker.tasks import _lost_tries

    log = _logs(tmp_path)[kind]
    store = StateStore(str(tmp_path / "out"))
    store.records = str(tmp_path)
    assert _lost_tries(log(), 5, "w-a", "run-1") == []
    assert store.started([4, 5, 6]) == [5]
    assert [t.worker for t in _lost_tries(log(), 5, "w-b", "run-1")] == ["w-a"]
    lost = _lost_tries(log(), 5, "w-c", "run-1")
    assert [(t.worker, t.status) for t in lost] == [
        ("w-a", WORKER_DIED), ("w-b", WORKER_DIED)]
    # another run of the step: one INTERRUPTED try, and counting starts afresh
    again = _lost_tries(log(), 5, "w-d", "run-2")
    assert [(t.worker, t.status) for t in again] == [("w-c", TryStatus.INTERRUPTED)]
    record = score_mini_batch(spec(1, index=5), ScriptedTries(done(1)),
                              run_max_try=1, lost=again)
    assert record["status"] == RUN_DONE
    committing = log()
    committing.commit(5, record)
    committing.close()
    assert store.started([4, 5, 6]) == []
    interrupted = {}
    assert dict(store.iter_records(interrupted=interrupted)) == {5: record}
    assert interrupted == {}
